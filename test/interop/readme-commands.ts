/**
 * Finds the grpcurl commands in README.md's fenced code blocks and reads each
 * the way a POSIX shell would, for the small part of the shell they use:
 * backslash line continuations, '…' and "…" quoting with \" escapes, $NAME
 * expansion, `NAME=$(grpcurl … | jq -r .FIELD)` to keep a field of the
 * answer, and a trailing `# comment`. Anything else is an error that names
 * the line, so a README command the test cannot read fails loudly instead of
 * being skipped.
 */

/** One grpcurl command from the README, with what the test needs to run and check it. */
export interface ReadmeCommand {
  /** The logical line as written (continuations joined), for messages. */
  text: string;
  /** grpcurl's arguments, quotes removed, `$NAME` left for `expand` (each word is a template). */
  words: string[];
  /** `NAME` when the line is `NAME=$(grpcurl … | jq -r .FIELD)`. */
  assign?: { name: string; field: string };
  /** The trailing comment, without `#`. */
  comment?: string;
}

type Token = { kind: 'word'; text: string } | { kind: 'pipe' };

/** Splits a logical line into words and pipes; returns the comment separately. */
function tokens(line: string): { tokens: Token[]; comment?: string } {
  const out: Token[] = [];
  let word: string | null = null;
  let i = 0;
  const push = () => {
    if (word !== null) out.push({ kind: 'word', text: word });
    word = null;
  };
  while (i < line.length) {
    const c = line[i]!;
    if (c === ' ' || c === '\t') {
      push();
      i++;
    } else if (c === '#' && word === null) {
      push();
      return { tokens: out, comment: line.slice(i + 1).trim() };
    } else if (c === '|') {
      push();
      out.push({ kind: 'pipe' });
      i++;
    } else if (c === "'") {
      const end = line.indexOf("'", i + 1);
      if (end < 0) throw new Error(`unterminated ' in: ${line}`);
      word = (word ?? '') + line.slice(i + 1, end).replaceAll('$', '\\$'); // nothing expands inside '…'
      i = end + 1;
    } else if (c === '"') {
      let text = '';
      i++;
      for (; i < line.length && line[i] !== '"'; i++) {
        // Inside "…" a backslash escapes only $ ` " \ (POSIX); $NAME stays for expand().
        if (line[i] === '\\' && '$`"\\'.includes(line[i + 1] ?? '')) text += line[++i] === '$' ? '\\$' : line[i];
        else if (line[i] === '`') throw new Error(`backquotes are not understood: ${line}`);
        else text += line[i];
      }
      if (i >= line.length) throw new Error(`unterminated " in: ${line}`);
      word = (word ?? '') + text;
      i++;
    } else if (c === '\\' || c === ';' || c === '&' || c === '<' || c === '>' || c === '(' || c === ')' || c === '`') {
      throw new Error(`"${c}" is not understood (outside quotes): ${line}`);
    } else {
      word = (word ?? '') + c;
      i++;
    }
  }
  push();
  return { tokens: out };
}

/** Replaces $NAME and ${NAME} (not \$) in a word with the values set by earlier commands. */
export function expand(word: string, vars: Record<string, string>): string {
  return word.replace(/\\\$|\$\{(\w+)\}|\$(\w+)/g, (all, braced: string | undefined, bare: string | undefined) => {
    if (all === '\\$') return '$';
    const name = (braced ?? bare)!;
    const value = vars[name];
    if (value === undefined) throw new Error(`$${name} is used before any command sets it`);
    return value;
  });
}

/** The logical lines of every fenced code block in a markdown text. */
function fencedLines(markdown: string): string[] {
  const lines: string[] = [];
  let inFence = false;
  let pending = '';
  for (const raw of markdown.split('\n')) {
    if (/^\s*```/.test(raw)) {
      inFence = !inFence;
      pending = '';
      continue;
    }
    if (!inFence) continue;
    if (raw.endsWith('\\')) {
      pending += raw.slice(0, -1);
      continue;
    }
    lines.push(pending + raw);
    pending = '';
  }
  return lines;
}

/** Every grpcurl command in the README's code blocks, in order. */
export function grpcurlCommands(markdown: string): ReadmeCommand[] {
  const commands: ReadmeCommand[] = [];
  for (const line of fencedLines(markdown)) {
    if (!/\bgrpcurl\b/.test(line)) continue;
    const text = line.trim();
    const assigned = /^(\w+)=\$\((.*)\)(\s+#.*)?$/.exec(text);
    const { tokens: toks, comment } = tokens(assigned ? `${assigned[2]!}${assigned[3] ?? ''}` : text);
    const pipe = toks.findIndex((t) => t.kind === 'pipe');
    const words = (pipe < 0 ? toks : toks.slice(0, pipe)).map((t) => (t.kind === 'word' ? t.text : '|'));
    if (words[0] !== 'grpcurl') throw new Error(`a line that mentions grpcurl does not start with it: ${text}`);
    const command: ReadmeCommand = { text, words: words.slice(1), ...(comment ? { comment } : {}) };
    if (assigned) {
      const rest = toks.slice(pipe + 1).map((t) => (t.kind === 'word' ? t.text : '|'));
      if (pipe < 0 || rest.length !== 3 || rest[0] !== 'jq' || rest[1] !== '-r' || !/^(\.\w+)+$/.test(rest[2]!)) {
        throw new Error(`only NAME=$(grpcurl … | jq -r .FIELD) is understood: ${text}`);
      }
      command.assign = { name: assigned[1]!, field: rest[2]!.slice(1) };
    } else if (pipe >= 0) {
      throw new Error(`a pipe is only understood inside NAME=$(…): ${text}`);
    }
    commands.push(command);
  }
  return commands;
}

/** The fenced code blocks of one `## TITLE` section of a markdown text, in order, each as its text (fences removed). */
export function sectionBlocks(markdown: string, title: string): string[] {
  const start = markdown.indexOf(`\n## ${title}\n`);
  if (start < 0) throw new Error(`no section "## ${title}"`);
  const next = markdown.indexOf('\n## ', start + 1);
  const section = markdown.slice(start, next < 0 ? undefined : next);
  return [...section.matchAll(/^```[^\n]*\n([\s\S]*?)^```$/gm)].map((m) => m[1]!);
}
