/**
 * `@hasten/providers/router`: one logical model across several endpoints, with
 * least-outstanding balancing, failover with cooldown, and provider fallback. Needs no SDK.
 * @since 0.1.0
 */

/** Routing across deployments. @since 0.1.0 */
export * as Router from "./EndpointRouter.js"
