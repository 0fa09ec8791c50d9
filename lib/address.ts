/**
 * What an address says about who can reach it, written once for ferryd
 * (which serves only loopback without TLS and principals) and its clients
 * (which send a token in clear text only to loopback); and how long a unix
 * socket's path may be, for every socket ferryd places.
 */

/** True for an address ("host:port", "[v6]:port" or "unix:path") only this machine can reach: 127.0.0.0/8, ::1, localhost, a unix socket. */
export function isLoopback(address: string): boolean {
  if (address.startsWith('unix:') || address.startsWith('unix-abstract:')) return true;
  const host = address.slice(0, address.lastIndexOf(':')).replace(/^\[|\]$/g, '').toLowerCase();
  return host === 'localhost' || host === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host);
}

/** The longest path a unix socket can have (sun_path, less its NUL). */
export const SOCKET_PATH_MAX = 107;
