/**
 * Fleet state: what one process learns about a budget key that every process sharing the
 * key should act on — an AIMD decrease, a hold (spent-budget headers, a 429's
 * `retry-after`), a circuit-breaker trip — written to one Redis hash per key and published
 * on one channel; every other process applies what it receives to its own key state.
 *
 * Times are Redis's: the scripts read `TIME` and send durations ("held for 4,998 ms more"),
 * which a receiver adds to its own `Clock`, so machine clocks never matter. Nothing here is
 * on a call's path: a publication is forked (one `EVAL` per event, none per call), and a
 * process reads a key's state once, on the key's first call (and again after a reconnect,
 * when messages may have been missed). When Redis does not answer, every process keeps its
 * own state (logged once); no call ever fails or waits because of it.
 * @internal
 */
import { Clock, Deferred, Effect, Exit, Fiber, Queue } from "effect"
import { Redis as IoRedisClient, type RedisOptions } from "ioredis"
import { randomUUID } from "node:crypto"
import type * as IoRedis from "../IoRedis.js"
import { type Event, seconds } from "./events.js"
import type { KeyState } from "./keyState.js"

/** What a process learnt about a key, as durations from now (milliseconds). */
export interface Change {
  /** Hold the key's calls this long (headers said a budget is spent, or a 429's `retry-after`). */
  readonly hold?: number | undefined
  /** The key's circuit is open this long. */
  readonly open?: number | undefined
  /** Multiply the key's concurrency limit by this (AIMD decrease), with its reason. */
  readonly decrease?: { readonly factor: number; readonly reason: string } | undefined
}

// Applies a change to the key's hash (a hold or an open circuit only ever extends, at most
// one decrease per interval fleet-wide: the calls of one burst answer 429 together in every
// process) and publishes what changed, with durations measured on Redis's clock.
const publishScript = `local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local hash = KEYS[1]
local hold = tonumber(ARGV[4])
local open = tonumber(ARGV[5])
local factor = tonumber(ARGV[6])
local interval = tonumber(ARGV[7])
local message = { k = ARGV[2], o = ARGV[3] }
local changed = false
local keep = 0
-- a hold or an open circuit: extends the field's end, never shortens it
local function extend(field, millis, short)
  if millis <= 0 then return end
  if now + millis > tonumber(redis.call('HGET', hash, field) or '0') then
    redis.call('HSET', hash, field, now + millis)
    message[short] = millis
    changed = true
  end
  keep = math.max(keep, millis)
end
extend('hold', hold, 'h')
extend('open', open, 'b')
if factor > 0 then
  if now - tonumber(redis.call('HGET', hash, 'decreased') or '0') >= interval then
    redis.call('HSET', hash, 'decreased', now)
    message.d = factor
    message.r = ARGV[8]
    changed = true
  end
  keep = math.max(keep, interval)
end
if not changed then return 0 end
if redis.call('PTTL', hash) < keep + 1000 then redis.call('PEXPIRE', hash, keep + 1000) end
redis.call('PUBLISH', ARGV[1], cjson.encode(message))
return 1`

// The key's hold and open circuit still to run, in milliseconds on Redis's clock.
const snapshotScript = `local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local v = redis.call('HMGET', KEYS[1], 'hold', 'open')
return { math.max(0, (tonumber(v[1]) or 0) - now), math.max(0, (tonumber(v[2]) or 0) - now) }`

/** How long a new limiter waits for its Redis connections before it starts without them. */
const CONNECT_WAIT_MILLIS = 2_000

type Inbox =
  | { readonly _tag: "message"; readonly text: string }
  | { readonly _tag: "watch"; readonly key: string; readonly state: KeyState }
  | { readonly _tag: "resync" }

/** The fleet state of one limiter. */
export interface Fleet {
  /** Starts following a key (its first call): reads its current fleet state. */
  readonly watch: (key: string, state: KeyState) => void
  /** Waits until the key's fleet state has been read once (immediate afterwards; bounded by the command timeout). */
  readonly ready: (state: KeyState) => Effect.Effect<void>
  /** Publishes a change this process made to a key (forked: never waits, never fails). */
  readonly publish: (key: string, change: Change) => Effect.Effect<void>
}

const connectionOverrides: RedisOptions = {
  // Fail at once while Redis is down (and a command that hangs after 1 s): the fleet state
  // is advisory and must never hold up a call.
  enableOfflineQueue: false,
  maxRetriesPerRequest: 1,
  commandTimeout: 1_000,
  retryStrategy: (times: number) => Math.min(100 * times, 2_000)
}

const whenReady = (client: IoRedisClient, millis: number) =>
  Effect.promise(() =>
    new Promise<void>((resolve) => {
      if (client.status === "ready") return resolve()
      const timer = setTimeout(done, millis)
      timer.unref?.()
      function done() {
        clearTimeout(timer)
        client.off("ready", done)
        resolve()
      }
      client.once("ready", done)
    })
  )

/** Opens the limiter's fleet connections (closed with the scope) and starts applying what others publish. */
export const make = Effect.fnUntraced(function*(config: {
  readonly redis: IoRedis.Options
  /** The Redis key prefix (`redisPrefix`): the hashes are `<prefix><key>:fleet`, the channel `<prefix>fleet`. */
  readonly prefix: string
  /** The shortest time between two fleet-wide decreases of one key. */
  readonly decreaseIntervalMillis: number
  /** The state of a key this process uses, or `undefined`. */
  readonly known: (key: string) => KeyState | undefined
  /** Every key this process uses. */
  readonly keys: () => Iterable<readonly [string, KeyState]>
  /** Applies another process's decrease (local once-a-second guard included; never republished). */
  readonly decrease: (key: string, state: KeyState, reason: string, factor: number) => Effect.Effect<void>
  /** Another process's breaker opened the key (its calls must go through this process's breaker again). */
  readonly opened: (key: string) => void
  readonly event: Event
}) {
  const scope = yield* Effect.scope
  const origin = randomUUID()
  const channel = `${config.prefix}fleet`
  const hashOf = (key: string) => `${config.prefix}${key}:fleet`
  const connect = (extra: RedisOptions) =>
    Effect.acquireRelease(
      Effect.sync(() => {
        const client = "client" in config.redis
          ? config.redis.client.duplicate({ ...connectionOverrides, ...extra })
          : new IoRedisClient(config.redis.url, { ...config.redis.options, ...connectionOverrides, ...extra } as never)
        // failures surface as failed commands, reported once below
        client.on("error", () => {})
        return client
      }),
      (client) => Effect.sync(() => client.disconnect())
    )
  const commands = yield* connect({})
  // The subscriber queues its SUBSCRIBE until connected, and subscribes again on every
  // (re)connection; a reconnection also re-reads the keys' state (messages may have been missed).
  const subscriber = yield* connect({ enableOfflineQueue: true, commandTimeout: undefined })
  // Publications run on their own (never awaited by a call); closing the limiter lets those
  // in flight finish (bounded by the command timeout) before the connections go, so a
  // process that exits right after a 429 or a trip still tells the others.
  const publishing = new Set<Fiber.Fiber<unknown>>()
  yield* Effect.addFinalizer(() => Fiber.awaitAll([...publishing]))
  const inbox = yield* Queue.unbounded<Inbox>()
  subscriber.on("message", (from: string, text: string) => {
    if (from === channel) Queue.offerUnsafe(inbox, { _tag: "message", text })
  })
  subscriber.on("ready", () => {
    subscriber.subscribe(channel).then(() => Queue.offerUnsafe(inbox, { _tag: "resync" }), () => {})
  })

  let down = false
  const healthy = <A>(effect: Effect.Effect<A, unknown>): Effect.Effect<A | undefined> =>
    effect.pipe(
      Effect.tap(() => {
        if (!down) return Effect.void
        down = false
        return Effect.logInfo("rate-limit: fleet state through Redis is back")
      }),
      Effect.catch((error) => {
        if (down) return Effect.succeed(undefined)
        down = true
        return Effect.as(
          Effect.logWarning(
            `rate-limit: fleet state through Redis unavailable (${error instanceof Error ? error.message : String(error)}): ` +
              `each process keeps its own holds, concurrency and circuit breaker until it is back`
          ),
          undefined
        )
      })
    )

  const apply = (key: string, state: KeyState, change: Change) =>
    Effect.gen(function*() {
      const now = yield* Clock.currentTimeMillis
      if (change.hold !== undefined && change.hold > 0 && now + change.hold > state.holdUntil) {
        state.holdUntil = now + change.hold
        yield* config.event(`hold=${seconds(change.hold)}`, {
          event: "rate_limit.hold",
          key,
          hold_seconds: seconds(change.hold),
          budget: "fleet"
        })
      }
      if (change.open !== undefined && change.open > 0 && now + change.open > state.fleetOpenUntil) {
        state.fleetOpenUntil = now + change.open
        config.opened(key)
        yield* config.event(`circuit_open=${seconds(change.open)}`, {
          event: "rate_limit.circuit_open",
          key,
          circuit_open_seconds: seconds(change.open),
          from: "fleet"
        })
      }
      if (change.decrease !== undefined) yield* config.decrease(key, state, `fleet_${change.decrease.reason}`, change.decrease.factor)
    })

  const snapshot = (key: string, state: KeyState) =>
    healthy(Effect.tryPromise(() => commands.eval(snapshotScript, 1, hashOf(key)) as Promise<[number, number]>)).pipe(
      Effect.flatMap((found) => found === undefined ? Effect.void : apply(key, state, { hold: found[0], open: found[1] }))
    )

  const handle = (item: Inbox): Effect.Effect<void> => {
    switch (item._tag) {
      case "message": {
        let message: { k?: unknown; o?: unknown; h?: unknown; b?: unknown; d?: unknown; r?: unknown }
        try {
          message = JSON.parse(item.text)
        } catch {
          return Effect.void
        }
        if (message.o === origin || typeof message.k !== "string") return Effect.void
        // a key this process has not used yet is read whole on its first call
        const state = config.known(message.k)
        if (state === undefined) return Effect.void
        const number = (value: unknown) => (typeof value === "number" && Number.isFinite(value) ? value : undefined)
        const factor = number(message.d)
        return apply(message.k, state, {
          hold: number(message.h),
          open: number(message.b),
          decrease: factor === undefined ? undefined : { factor, reason: typeof message.r === "string" ? message.r : "decrease" }
        })
      }
      case "watch":
        return Effect.forkIn(
          snapshot(item.key, item.state).pipe(
            Effect.ensuring(Effect.sync(() => {
              const ready = item.state.fleetReady
              item.state.fleetReady = undefined
              if (ready !== undefined) Deferred.doneUnsafe(ready, Exit.void)
            }))
          ),
          scope
        ).pipe(Effect.asVoid)
      case "resync":
        return Effect.forkIn(Effect.forEach(config.keys(), ([key, state]) => snapshot(key, state), { discard: true }), scope).pipe(
          Effect.asVoid
        )
    }
  }
  yield* Effect.forkIn(Effect.forever(Effect.flatMap(Queue.take(inbox), handle)), scope)
  yield* Effect.all([whenReady(commands, CONNECT_WAIT_MILLIS), whenReady(subscriber, CONNECT_WAIT_MILLIS)], { concurrency: 2 })
  // subscribed before the first call, so nothing published after it is missed (when Redis
  // is down, the subscription is made on the connection's first "ready")
  if (subscriber.status === "ready") {
    yield* Effect.promise(() =>
      Promise.race([
        subscriber.subscribe(channel).then(() => undefined, () => undefined),
        new Promise<void>((resolve) => setTimeout(resolve, CONNECT_WAIT_MILLIS).unref?.())
      ])
    )
  }

  const fleet: Fleet = {
    watch: (key, state) => {
      state.fleetReady = Deferred.makeUnsafe<void>()
      Queue.offerUnsafe(inbox, { _tag: "watch", key, state })
    },
    ready: (state) => (state.fleetReady === undefined ? Effect.void : Deferred.await(state.fleetReady)),
    publish: (key, change) =>
      Effect.forkDetach(
        healthy(Effect.tryPromise(() =>
          commands.eval(
            publishScript,
            1,
            hashOf(key),
            channel,
            key,
            origin,
            String(Math.ceil(change.hold ?? 0)),
            String(Math.ceil(change.open ?? 0)),
            String(change.decrease?.factor ?? 0),
            String(config.decreaseIntervalMillis),
            change.decrease?.reason ?? ""
          )
        ))
      ).pipe(
        Effect.map((fiber) => {
          publishing.add(fiber)
          fiber.addObserver(() => publishing.delete(fiber))
        })
      )
  }
  return fleet
})
