/**
 * The `ferry` command: ferryd's API for people and shell scripts.
 *
 * `run(argv, io)` is the whole CLI and returns the exit code; it writes only
 * to the streams it is given and never exits the process, so tests run it
 * in-process. client/main.ts is the entry that bin/ferry.mjs starts.
 */
import { readFileSync } from 'node:fs';
import type { Writable } from 'node:stream';
import * as grpc from '@grpc/grpc-js';
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import { ClientOptionError, FerryCallError, FerryClient, TERMINAL, type FerryClientOptions, type Migration, type MigrationState, type StartMigrationRequest } from './client.ts';
import { clientOptions, connectionHint, optionProblem, refusalHint, SECURITY_HELP, securityFlags, type SecurityFlags } from './security-flags.ts';
import { parseDestination, parseMigrationId, parseShareRef, parseState, STATE_NAMES } from './args.ts';
import { integer, parseSize } from '../lib/units.ts';
import { backendTable, compatibilityDetails, migrationDetails, migrationJson, migrationTable, shortState } from './format.ts';
import { progressView, type ViewKind } from './progress.ts';
import { StdoutWatch } from './stdout.ts';

/** Exit codes. They are part of the CLI's contract: scripts test them. */
export const EXIT = {
  /** The command did what was asked (for watch and migrate: the migration ended in SUCCESS). */
  OK: 0,
  /** A bug in ferry itself (an unexpected exception); the stack is on stderr. */
  BUG: 1,
  /** Bad flags or arguments; nothing was sent. */
  USAGE: 2,
  /** ferryd answered with an error (stderr: "ferry: CODE: message"). */
  REFUSED: 3,
  /** ferryd could not be reached (no connection, or a TLS handshake that failed), or did not answer within --timeout-ms. */
  UNREACHABLE: 4,
  /** watch or migrate: the migration ended in ERROR or CANCELLED. */
  FAILED: 5,
  /** migrate: every cutover ran past its window and was rolled back; the migration waits in PHASE1_DONE. */
  CUTOVER_GAVE_UP: 6,
  /** watch or migrate was interrupted (SIGINT); the migration goes on in ferryd. */
  INTERRUPTED: 130,
} as const;

/** What the CLI reads and writes; the process's own streams in production, captures in tests. */
export interface CliIO {
  stdout: Writable;
  stderr: Writable;
  /** FERRY_SERVER and FERRY_TOKEN are read from here. */
  env: Record<string, string | undefined>;
  /** Whether stdout is a terminal: a live bar for watch and migrate, else plain lines. */
  isTTY: boolean;
  /** Aborted on SIGINT: watch and migrate stop waiting and say how to pick the migration up. */
  signal?: AbortSignal;
}

/** The address used when neither --server nor FERRY_SERVER is given. */
export const DEFAULT_SERVER = '127.0.0.1:50051';

const HELP_AFTER = `
Addresses: --server takes HOST:PORT or unix:PATH (default: $FERRY_SERVER, else ${DEFAULT_SERVER}).
Shares are "backend/share_id"; destinations are "backend#pool" (Manila's "host@backend#pool" also works).
Sizes take units: 1048576, 512KiB, 10MiB, 1.5GiB (KiB/MiB/GiB and K/M/G: powers of 1024; KB/MB/GB: of 1000).
${SECURITY_HELP}
--json prints one JSON document per command (watch: one object per line): fields in lowerCamelCase as in
the proto, enums by name (MIGRATION_STATE_SUCCESS), timestamps as RFC 3339 strings, sizes as numbers.
Errors always go to stderr as "ferry: CODE: message".

Exit codes:
  0    success (watch and migrate: the migration ended in SUCCESS, or reached --until)
  1    a bug in ferry itself
  2    usage error: a bad flag or argument; nothing was sent
  3    ferryd refused the call (CODE is Ferry's error code, else the gRPC status name)
  4    ferryd is unreachable (no connection, or a failed TLS handshake), or did not answer within --timeout-ms
  5    watch or migrate: the migration ended in ERROR or CANCELLED
  6    migrate: every cutover ran past its window and was rolled back; the migration waits in PHASE1_DONE
  130  watch or migrate interrupted; the migration goes on in ferryd
`;

/** A usage problem found after commander parsed the line (exit 2). */
class UsageError extends Error {}

/** The global options every command sees. */
interface GlobalOptions extends SecurityFlags {
  server?: string;
  json?: boolean;
  timeoutMs: number;
}

/** What a command's body gets. */
interface Context {
  client: FerryClient;
  server: string;
  json: boolean;
  io: CliIO;
  /** Aborted on SIGINT (io.signal) or when stdout's reader went away: watch and migrate stop waiting. */
  signal: AbortSignal;
  /**
   * Whether stdout's reader went away (EPIPE, as after `| head -1`), once
   * what was written so far has been handed over: the command then ends
   * quietly with exit 0.
   */
  readerGone(): Promise<boolean>;
  /** Writes to stdout. */
  out(text: string): void;
  /** Writes one JSON document to stdout. */
  json1(doc: unknown): void;
  /** Writes a line to stderr, prefixed "ferry: ". */
  say(text: string): void;
}

function version(): string {
  try {
    return (JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }).version;
  } catch {
    return 'unknown';
  }
}

/** Runs the CLI with `argv` (the words after "ferry") and resolves with the exit code. */
export async function run(argv: readonly string[], io: CliIO): Promise<number> {
  let code: number = EXIT.OK;
  const stdout = new StdoutWatch(io.stdout);
  const program = buildProgram(io, stdout, (c) => (code = c));
  try {
    await program.parseAsync([...argv], { from: 'user' });
    await stdout.flushed();
  } catch (err) {
    if (err instanceof CommanderError) return err.exitCode === 0 ? EXIT.OK : EXIT.USAGE;
    throw err;
  } finally {
    stdout.close();
  }
  if (stdout.error) {
    io.stderr.write(`ferry: cannot write to stdout: ${stdout.error.message}\n`);
    return EXIT.BUG;
  }
  return stdout.readerGone() ? EXIT.OK : code;
}

function buildProgram(io: CliIO, stdout: StdoutWatch, setCode: (code: number) => void): Command {
  const program = new Command('ferry')
    .description('Move storage shares between backends with ferryd: two-phase, resumable migrations.')
    .version(version(), '-V, --version')
    .option('--server <addr>', `ferryd's address, HOST:PORT or unix:PATH (default: $FERRY_SERVER, else ${DEFAULT_SERVER})`)
    .option('--json', 'machine-readable output (see below)')
    .option('--timeout-ms <ms>', 'deadline of each call to ferryd, connecting included (watch and migrate wait as long as the migration takes)', integer(1, 2 ** 31 - 1), 10_000)
    .exitOverride()
    .configureOutput({
      writeOut: (s) => io.stdout.write(s),
      writeErr: (s) => io.stderr.write(s),
      outputError: (s, write) => write(`ferry: ${s.replace(/^error: /, '')}`),
    })
    .showHelpAfterError('(run "ferry --help" for usage)')
    .addHelpText('after', HELP_AFTER);
  securityFlags(program);

  /** Wraps a command body: builds the client, maps every failure to its exit code, closes the client. */
  const action =
    <A extends unknown[]>(body: (ctx: Context, ...args: A) => Promise<number>) =>
    async (...args: unknown[]) => {
      const command = args.at(-1) as Command;
      const globals = command.optsWithGlobals<GlobalOptions>();
      const ctxArgs = args.slice(0, -1) as A;
      let client: FerryClient | undefined;
      const say = (text: string) => io.stderr.write(`ferry: ${text}\n`);
      const security = clientOptions(globals, io.env);
      try {
        const server = serverAddress(globals.server ?? io.env.FERRY_SERVER);
        client = new FerryClient(server, globals.timeoutMs, security);
        const ctx: Context = {
          client,
          server,
          json: globals.json === true,
          io,
          signal: io.signal ? AbortSignal.any([io.signal, stdout.signal]) : stdout.signal,
          readerGone: async () => (await stdout.flushed(), stdout.readerGone()),
          out: (text) => void (io.stdout.writable && io.stdout.write(text)),
          json1: (doc) => void (io.stdout.writable && io.stdout.write(`${JSON.stringify(doc, null, 2)}\n`)),
          say,
        };
        setCode(await body(ctx, ...ctxArgs));
      } catch (err) {
        setCode(failure(err, globals.server ?? io.env.FERRY_SERVER ?? DEFAULT_SERVER, globals, security, say));
      } finally {
        client?.close();
      }
    };

  program
    .command('backends')
    .description('list the backends with their pools, driver, capabilities and health')
    .action(
      action(async (ctx) => {
        const { backends } = await ctx.client.listBackends();
        if (ctx.json) ctx.json1({ backends });
        else ctx.out(backendTable(backends));
        return EXIT.OK;
      }),
    );

  program
    .command('check')
    .description('dry run: can this share move to this destination with these flags? (exit 0 either way; see "compatible")')
    .argument('<share>', 'backend/share_id', parseShareRef)
    .argument('<destination>', 'backend#pool', parseDestination)
    .option('--writable', 'the share stays writable during phase 1')
    .option('--nondisruptive', 'clients keep access through the cutover')
    .option('--preserve-metadata', "the share's metadata moves with it")
    .option('--preserve-snapshots', "the share's snapshots move with it")
    .addOption(dataPathOption())
    .action(
      action(async (ctx, share: { backend: string; shareId: string }, destination: string, opts: { writable?: boolean; nondisruptive?: boolean; preserveMetadata?: boolean; preserveSnapshots?: boolean; dataPath?: DataPathFlag }) => {
        const report = await ctx.client.checkCompatibility({ share, destination, ...capabilityFlags(opts), dataPath: wireDataPath(opts.dataPath) });
        if (ctx.json) ctx.json1(report);
        else ctx.out(compatibilityDetails(`${share.backend}/${share.shareId}`, destination, report));
        return EXIT.OK;
      }),
    );

  startFlags(
    program
      .command('start')
      .description('start phase 1 of a migration and return at once (then: ferry watch, ferry complete)')
      .argument('<share>', 'backend/share_id', parseShareRef)
      .argument('<destination>', 'backend#pool', parseDestination),
  ).action(
    action(async (ctx, share: { backend: string; shareId: string }, destination: string, opts: StartFlags) => {
      const m = await ctx.client.startMigration(startRequest(share, destination, opts));
      if (ctx.json) ctx.json1(migrationJson(m));
      else ctx.out(`${migrationDetails(m)}\nnext: ferry watch --until PHASE1_DONE ${m.id}, then ferry complete ${m.id}\n`);
      return EXIT.OK;
    }),
  );

  for (const [name, description] of [
    ['complete', 'ask for the cutover (phase 2) of a migration in PHASE1_DONE; returns at once with COMPLETING'],
    ['cancel', 'cancel a migration before its cutover; the source is left untouched'],
    ['show', 'show one migration'],
  ] as const) {
    program
      .command(name)
      .description(description)
      .argument('<id>', 'the migration id (mig-...)', parseMigrationId)
      .action(
        action(async (ctx, id: string) => {
          const m = name === 'complete' ? await ctx.client.completeMigration(id) : name === 'cancel' ? await ctx.client.cancelMigration(id) : await ctx.client.getMigration(id);
          if (ctx.json) ctx.json1(migrationJson(m));
          else ctx.out(migrationDetails(m));
          return EXIT.OK;
        }),
      );
  }

  program
    .command('list')
    .description('list migrations, oldest first, one page at a time (or --all)')
    .option('--state <state>', `only migrations in this state: ${STATE_NAMES.join(', ')} (or as --json prints them, MIGRATION_STATE_SUCCESS)`, parseState)
    .option('--backend <name>', 'only migrations from or to this backend')
    .option('--page-size <n>', 'migrations per page, 1 to 1000 (default 100)', integer(1, 1000))
    .addOption(new Option('--page-token <token>', 'the page after the one that printed this token').conflicts('all'))
    .option('--all', 'every page')
    .action(
      action(async (ctx, opts: { state?: MigrationState; backend?: string; pageSize?: number; pageToken?: string; all?: boolean }) => {
        const migrations: Migration[] = [];
        let pageToken = opts.pageToken ?? '';
        do {
          const page = await ctx.client.listMigrations({ state: opts.state ?? 'MIGRATION_STATE_UNSPECIFIED', backend: opts.backend ?? '', pageSize: opts.pageSize ?? 0, pageToken });
          migrations.push(...page.migrations);
          pageToken = page.nextPageToken;
        } while (opts.all && pageToken);
        if (ctx.json) ctx.json1({ migrations: migrations.map(migrationJson), nextPageToken: pageToken });
        else ctx.out(migrationTable(migrations) + (pageToken ? `more: ferry list --page-token ${pageToken}  (or --all)\n` : ''));
        return EXIT.OK;
      }),
    );

  program
    .command('watch')
    .description('follow a migration until it ends (a live bar on a terminal; plain lines otherwise)')
    .argument('<id>', 'the migration id (mig-...)', parseMigrationId)
    .option('--until <state>', 'stop (exit 0) once the migration reaches this state, e.g. PHASE1_DONE (or MIGRATION_STATE_PHASE1_DONE)', parseState)
    .option('--interval-ms <ms>', INTERVAL_HELP, integer(0, 3_600_000), 1_000)
    .option('--reconnect-ms <ms>', RECONNECT_HELP, integer(0, 2 ** 31 - 1), 60_000)
    .action(
      action(async (ctx, id: string, opts: { until?: MigrationState; intervalMs: number; reconnectMs: number }) => {
        // A unary call first: it has a deadline, so an unreachable daemon or an unknown id fails fast.
        let last = await ctx.client.getMigration(id);
        const view = progressView(viewKind(ctx), ctx.io.stdout, opts.intervalMs);
        try {
          last = await ctx.client.waitFor(id, (m) => m.state === opts.until, (m) => view.update((last = m)), {
            signal: ctx.signal,
            reconnectMs: opts.reconnectMs,
            onReconnect: (err) => view.notice(() => lost(ctx, id, err, opts.reconnectMs)),
          });
        } catch (err) {
          if (!ctx.signal.aborted) throw err;
          view.stop();
          return (await ctx.readerGone()) ? EXIT.OK : interrupted(ctx, last);
        } finally {
          view.stop();
        }
        if (await ctx.readerGone()) return EXIT.OK;
        if (opts.until && last.state === opts.until) return EXIT.OK;
        return ended(ctx, last);
      }),
    );

  startFlags(
    program
      .command('migrate')
      .description('the one-phase migration, done here: start, wait for phase 1, complete, wait for SUCCESS')
      .argument('<share>', 'backend/share_id', parseShareRef)
      .argument('<destination>', 'backend#pool', parseDestination)
      .option('--cutover-attempts <n>', 'ask for the cutover again this many times in all when it runs past its window and rolls back', integer(1, 100), 3)
      .option('--interval-ms <ms>', INTERVAL_HELP, integer(0, 3_600_000), 1_000)
      .option('--reconnect-ms <ms>', RECONNECT_HELP, integer(0, 2 ** 31 - 1), 60_000),
  ).action(
    action(async (ctx, share: { backend: string; shareId: string }, destination: string, opts: StartFlags & { cutoverAttempts: number; intervalMs: number; reconnectMs: number }) => {
      const view = progressView(ctx.json ? 'none' : viewKind(ctx), ctx.io.stdout, opts.intervalMs);
      let last: Migration | undefined;
      try {
        last = await ctx.client.migrate(startRequest(share, destination, opts), {
          cutoverAttempts: opts.cutoverAttempts,
          signal: ctx.signal,
          reconnectMs: opts.reconnectMs,
          onReconnect: (err) => view.notice(() => lost(ctx, last?.id ?? 'the migration', err, opts.reconnectMs)),
          onUpdate: (m) => {
            last = m;
            view.update(m);
          },
        });
      } catch (err) {
        view.stop();
        if (await ctx.readerGone()) return EXIT.OK;
        if (ctx.signal.aborted && last) return interrupted(ctx, last);
        if (last && err instanceof FerryCallError) ctx.say(`while migrating ${last.id} (${shortState(last.state)}):`);
        throw err;
      }
      view.stop();
      if (ctx.json) ctx.json1(migrationJson(last));
      if (await ctx.readerGone()) return EXIT.OK;
      if (!TERMINAL.has(last.state)) {
        const why = last.lastCutoverAbort ? ` (last: ${last.lastCutoverAbort.message})` : '';
        ctx.say(
          `gave up after ${opts.cutoverAttempts} cutover attempt(s) of ${last.id}: each ran past its ${last.maxDowntimeMs} ms window and was rolled back${why}. ` +
            `The migration waits in ${shortState(last.state)}: ferry complete ${last.id} to try again, or ferry cancel ${last.id}; a larger --max-downtime-ms or --cutover-action force allows a longer freeze.`,
        );
        return EXIT.CUTOVER_GAVE_UP;
      }
      return ended(ctx, last);
    }),
  );

  return program;
}

/** The flags of start and migrate, as commander gives them. */
interface StartFlags {
  writable?: boolean;
  nondisruptive?: boolean;
  preserveMetadata?: boolean;
  preserveSnapshots?: boolean;
  newShareType?: string;
  requestId?: string;
  maxBandwidth?: number;
  maxDowntimeMs?: number;
  cutoverAction?: 'abort' | 'force';
  dataPath?: DataPathFlag;
}

/** How --data-path spells the data paths. */
type DataPathFlag = 'driver' | 'host';

function dataPathOption(): Option {
  return new Option('--data-path <path>', "how the data moves: driver (the source's array copies it) or host (ferryd copies it, between arrays that cannot reach each other); default: driver where it can, else host").choices([
    'driver',
    'host',
  ]);
}

function wireDataPath(flag: DataPathFlag | undefined): StartMigrationRequest['dataPath'] {
  return flag === 'driver' ? 'DATA_PATH_DRIVER' : flag === 'host' ? 'DATA_PATH_HOST' : 'DATA_PATH_UNSPECIFIED';
}

function startFlags(command: Command): Command {
  return command
    .option('--writable', 'the share stays writable during phase 1 (else it is read-only for the whole migration)')
    .option('--nondisruptive', 'clients keep access through the cutover: writes wait instead of failing')
    .option('--preserve-metadata', "the share's metadata moves with it")
    .option('--preserve-snapshots', "the share's snapshots move with it")
    .option('--new-share-type <type>', 'a share type for the share at its destination')
    .option('--request-id <id>', 'makes the start idempotent: the same id and fields return the same migration')
    .option('--max-bandwidth <size>', 'cap on the copy, bytes per second, e.g. 10MiB (default: none)', parseSize)
    .option('--max-downtime-ms <ms>', 'the cutover window: the longest writes may be frozen (default: the daemon\'s)', integer(0, 2 ** 32 - 1))
    .addOption(new Option('--cutover-action <action>', 'when the cutover runs past its window: abort (roll back) or force (finish anyway)').choices(['abort', 'force']))
    .addOption(dataPathOption());
}

function capabilityFlags(opts: { writable?: boolean; nondisruptive?: boolean; preserveMetadata?: boolean; preserveSnapshots?: boolean }) {
  return { writable: opts.writable === true, nondisruptive: opts.nondisruptive === true, preserveMetadata: opts.preserveMetadata === true, preserveSnapshots: opts.preserveSnapshots === true };
}

function startRequest(share: { backend: string; shareId: string }, destination: string, opts: StartFlags): StartMigrationRequest {
  return {
    share,
    destination,
    ...capabilityFlags(opts),
    newShareType: opts.newShareType ?? '',
    requestId: opts.requestId ?? '',
    maxBandwidthBytesPerSec: opts.maxBandwidth ?? 0,
    maxDowntimeMs: opts.maxDowntimeMs ?? 0,
    cutoverAction: opts.cutoverAction === 'force' ? 'CUTOVER_ACTION_FORCE' : opts.cutoverAction === 'abort' ? 'CUTOVER_ACTION_ABORT' : 'CUTOVER_ACTION_UNSPECIFIED',
    dataPath: wireDataPath(opts.dataPath),
  };
}

function viewKind(ctx: Context): ViewKind {
  if (ctx.json) return 'json';
  return ctx.io.isTTY ? 'bar' : 'lines';
}

const INTERVAL_HELP = 'without a terminal: print progress-only changes at most this often; 0 prints every one';
const RECONNECT_HELP = 'when ferryd restarts or goes away, watch again for this long before giving up (exit 4); 0 gives up at once';

/** Says that the watch was lost and is being tried again (through the view: a live bar makes room for it). */
function lost(ctx: Context, id: string, err: FerryCallError, reconnectMs: number): void {
  ctx.say(`lost ferryd at ${ctx.server} (${err.code}: ${err.message}); watching ${id} again for up to ${reconnectMs % 1000 === 0 ? `${reconnectMs / 1000} s` : `${reconnectMs} ms`}`);
}

/** Says how to pick up a migration that watch or migrate stopped following on SIGINT. */
function interrupted(ctx: Context, m: Migration): number {
  ctx.say(`interrupted; migration ${m.id} goes on in ferryd (${shortState(m.state)}): ferry watch ${m.id}, ferry complete ${m.id} or ferry cancel ${m.id}`);
  return EXIT.INTERRUPTED;
}

/** The exit code for a migration that watch or migrate saw end, saying on stderr why it failed. */
function ended(ctx: Context, m: Migration): number {
  switch (m.state) {
    case 'MIGRATION_STATE_SUCCESS':
      return EXIT.OK;
    case 'MIGRATION_STATE_ERROR':
      ctx.say(`migration ${m.id} ended in ERROR: ${m.error?.code ?? 'UNKNOWN'}: ${m.error?.message ?? 'no reason given'}`);
      return EXIT.FAILED;
    case 'MIGRATION_STATE_CANCELLED':
      ctx.say(`migration ${m.id} was CANCELLED; the share is where it was`);
      return EXIT.FAILED;
    default:
      // The stream ended before the migration did: only a daemon going away does that.
      ctx.say(`the watch of ${m.id} ended while it was ${shortState(m.state)}; ferryd went away? ferry watch ${m.id} to pick it up`);
      return EXIT.UNREACHABLE;
  }
}

/** Checks --server (or FERRY_SERVER) before any call. */
function serverAddress(value: string | undefined): string {
  const server = value ?? DEFAULT_SERVER;
  if (server.trim() === '' || server === 'unix:' || /\s/.test(server)) throw new UsageError(`--server "${server}" must be HOST:PORT or unix:PATH`);
  return server;
}

/** True when the error means no ferryd answered: the transport's UNAVAILABLE or DEADLINE_EXCEEDED, without Ferry's trailer. */
function unreachable(err: FerryCallError): boolean {
  return err.trailer === undefined && (err.status === grpc.status.UNAVAILABLE || err.status === grpc.status.DEADLINE_EXCEEDED);
}

/** Says what went wrong on stderr and picks the exit code. */
function failure(err: unknown, server: string, globals: GlobalOptions, security: FerryClientOptions, say: (text: string) => void): number {
  if (err instanceof UsageError || err instanceof InvalidArgumentError) {
    say(err.message);
    return EXIT.USAGE;
  }
  if (err instanceof ClientOptionError) {
    say(optionProblem(err, globals));
    return EXIT.USAGE;
  }
  if (err instanceof FerryCallError) {
    if (err.connection) {
      say(`${err.code}: cannot connect to ferryd at ${server}: ${err.message} (${connectionHint(err.connection)})`);
      return EXIT.UNREACHABLE;
    }
    if (unreachable(err)) {
      const why = err.status === grpc.status.DEADLINE_EXCEEDED ? `no answer within --timeout-ms ${globals.timeoutMs}` : err.message;
      say(`${err.code}: cannot reach ferryd at ${server}: ${why} (is ferryd running there? set --server or FERRY_SERVER)`);
      return EXIT.UNREACHABLE;
    }
    const hint = refusalHint(err.status, security);
    say(`${err.code}: ${err.message}${hint === undefined ? '' : ` (${hint})`}`);
    return EXIT.REFUSED;
  }
  say(`internal error (a bug in ferry): ${(err as Error)?.stack ?? String(err)}`);
  return EXIT.BUG;
}
