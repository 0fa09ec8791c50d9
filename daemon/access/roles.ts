/**
 * Who may call what: the role each RPC ferryd serves needs. Roles are
 * ordered, each including the one before (viewer < operator < admin), as
 * in Manila's policy defaults and the roles of storage arrays' own
 * management APIs. Health and reflection answer everyone: a load balancer
 * and grpcurl must reach them without a credential.
 *
 * Every method of every service ferryd serves is named here once;
 * test/daemon/access-roles.test.ts walks the compiled API so that an RPC
 * added later cannot go unclassified. A method of one of these services
 * that is still missing needs admin: refusing is the safe mistake.
 */

/** The roles, lowest first. */
export const ROLES = ['viewer', 'operator', 'admin'] as const;
export type Role = (typeof ROLES)[number];

/** True when `held` includes `needed`. */
export function includes(held: Role, needed: Role): boolean {
  return ROLES.indexOf(held) >= ROLES.indexOf(needed);
}

/** Services that answer every caller. */
export const PUBLIC_SERVICES: ReadonlySet<string> = new Set(['grpc.health.v1.Health', 'grpc.reflection.v1.ServerReflection', 'grpc.reflection.v1alpha.ServerReflection']);

/** Each method's role, by service. `mutating`: the call changes state, so it is audited whatever its result. */
interface MethodRule {
  role: Role;
  mutating: boolean;
}

const read = (role: Role = 'viewer'): MethodRule => ({ role, mutating: false });
const write = (role: Role = 'operator'): MethodRule => ({ role, mutating: true });

/**
 * The simulator's share contents (ReadShare, ReadSnapshot, ChecksumTarget's
 * bytes) need operator, although they change nothing: a viewer sees the
 * state of migrations and arrays, not the data in the shares.
 */
export const METHOD_RULES: Readonly<Record<string, Readonly<Record<string, MethodRule>>>> = {
  'ferry.v1.MigrationService': {
    GetMigration: read(),
    ListMigrations: read(),
    WatchMigration: read(),
    ListBackends: read(),
    CheckCompatibility: read(),
    StartMigration: write(),
    CompleteMigration: write(),
    CancelMigration: write(),
  },
  'ferry.simulator.v1.SimulatorService': {
    ListBackends: read(),
    GetShare: read(),
    ListShares: read(),
    ChecksumShare: read(),
    GetJob: read(),
    ListJobs: read(),
    WatchJobs: read(),
    GetWorkload: read(),
    ListWorkloads: read(),
    VerifyWorkload: read(),
    ListChangedExtents: read(),
    GetFaults: read(),
    ReadShare: read('operator'),
    ReadSnapshot: read('operator'),
    ChecksumTarget: read('operator'),
    CreateShare: write(),
    DeleteShare: write(),
    WriteShare: write(),
    StartJob: write(),
    CutoverJob: write(),
    CancelJob: write(),
    StartWorkload: write(),
    StopWorkload: write(),
    CreateSnapshot: write(),
    DeleteSnapshot: write(),
    FreezeShare: write(),
    ReleaseShare: write(),
    CreateTarget: write(),
    WriteTarget: write(),
    PromoteTarget: write(),
    DiscardTarget: write(),
    RetireShare: write(),
    SetFaults: write('admin'),
    ClearFaults: write('admin'),
  },
};

/** What a call to `path` ("/package.Service/Method") needs: null for a public service. */
export function ruleFor(path: string): MethodRule | null {
  const [, service = '', method = ''] = /^\/([^/]+)\/([^/]+)$/.exec(path) ?? [];
  if (PUBLIC_SERVICES.has(service)) return null;
  return METHOD_RULES[service]?.[method] ?? { role: 'admin', mutating: true };
}
