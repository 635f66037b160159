/**
 * `@hasten/testkit`: loopback simulators of the provider APIs and fakes for tests.
 * @since 0.1.0
 */

/** A real `redis-server` on a free loopback port. @since 0.1.0 */
export * as RedisServer from "./RedisServer.js"
