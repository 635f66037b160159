/**
 * A route of a simulated API and what its handler is given.
 * @since 0.1.0
 */
import type { IncomingMessage, ServerResponse } from "node:http"
import type { Engine } from "./engine.js"
import type { Vendor } from "./vendor.js"

/** Everything a route handler needs. */
export interface RouteContext {
  readonly engine: Engine
  readonly request: IncomingMessage
  readonly response: ServerResponse
  readonly url: URL
  /** The route name, e.g. `POST /v1/batches/:id`. */
  readonly route: string
  /** The caller's API key ("" on public routes). */
  readonly key: string
  /** Path parameters captured by the route pattern. */
  readonly params: ReadonlyArray<string>
  /** `http://127.0.0.1:<port>` */
  readonly origin: string
}

/** One route of a vendor API. */
export interface Route {
  readonly method: string
  readonly pattern: RegExp
  readonly name: string
  readonly vendor: Vendor
  /** No API key needed (Replicate's stream URLs). */
  readonly public?: boolean
  readonly handle: (context: RouteContext) => Promise<void>
}
