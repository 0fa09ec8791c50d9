/**
 * What the daemon (and tests, and anyone embedding the array) imports:
 * the array, its configuration, its errors, and the gRPC service that serves it.
 */
export { SimArray } from './array.ts';
export type { SimArrayOptions, BackendView, PoolView, ShareView, CreateShareInput } from './array.ts';
export { DEFAULT_SIMULATOR_CONFIG, SimulatorConfigError, loadSimulatorConfig, resolveSimulatorConfig } from './config.ts';
export type { SimulatorConfig, BackendConfig, PoolConfig } from './config.ts';
export { SIMULATOR_SERVICE, addSimulatorService, simulatorServiceDefinition } from './service.ts';
export { ARRAY_ERROR_CODES, ARRAY_ERROR_DOMAIN, ArrayError } from './errors.ts';
export type { ArrayErrorCode } from './errors.ts';
