/**
 * The driver API that vendor plugins import: the driver contract, the error
 * type, and the API version. See docs in driver.ts and data-path.ts.
 */
export * from './driver.ts';
export * from './data-path.ts';
export * from './errors.ts';
