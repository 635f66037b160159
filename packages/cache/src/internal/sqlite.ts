/**
 * The synchronous SQLite core of the SQLite store: schema, pragmas and prepared
 * statements over `node:sqlite`. It imports nothing but Node built-ins so a plain
 * `node` child process can load it directly (the multi-process test does).
 * @since 0.1.0
 */
import { mkdirSync } from "node:fs"
import { dirname } from "node:path"
import { DatabaseSync, type StatementSync } from "node:sqlite"

/** One stored row. */
export interface Row {
  readonly key: string
  readonly namespace: string
  readonly value: string
  readonly createdAt: number
  readonly expiresAt?: number | undefined
}

/** Opening options. */
export interface SqliteOptions {
  readonly path: string
  /** How long a writer waits for another process's lock, in milliseconds. */
  readonly busyTimeoutMillis?: number | undefined
}

const schema = `
CREATE TABLE IF NOT EXISTS hasten_cache (
  key TEXT PRIMARY KEY NOT NULL,
  namespace TEXT NOT NULL,
  value TEXT NOT NULL,
  bytes INTEGER NOT NULL,
  created_at INTEGER NOT NULL,
  expires_at INTEGER
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS hasten_cache_namespace_created ON hasten_cache (namespace, created_at);
`

/** Inserts or replaces one row: key, namespace, value, bytes, created_at, expires_at. */
export const upsertSql = "INSERT INTO hasten_cache (key, namespace, value, bytes, created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?) " +
  "ON CONFLICT (key) DO UPDATE SET namespace = excluded.namespace, value = excluded.value, bytes = excluded.bytes, " +
  "created_at = excluded.created_at, expires_at = excluded.expires_at"

/** A cache table in one SQLite file, shared safely by several processes (WAL + busy timeout). */
export class SqliteDatabase {
  readonly path: string
  readonly #db: DatabaseSync
  readonly #get: StatementSync
  readonly #set: StatementSync
  readonly #delete: StatementSync
  readonly #pruneAll: StatementSync
  readonly #pruneNamespace: StatementSync
  readonly #clear: StatementSync
  readonly #stats: StatementSync

  constructor(options: SqliteOptions) {
    this.path = options.path
    if (options.path !== ":memory:") mkdirSync(dirname(options.path), { recursive: true })
    this.#db = new DatabaseSync(options.path, { timeout: options.busyTimeoutMillis ?? 5_000 })
    this.#db.exec(`PRAGMA busy_timeout = ${Math.max(0, Math.floor(options.busyTimeoutMillis ?? 5_000))}`)
    this.#db.exec("PRAGMA journal_mode = WAL")
    this.#db.exec("PRAGMA synchronous = NORMAL")
    this.#db.exec(schema)
    // Rows come back as arrays: no per-row property names to build on the hot path.
    this.#get = this.#db.prepare("SELECT namespace, value, created_at, expires_at FROM hasten_cache WHERE key = ?")
    this.#get.setReturnArrays(true)
    this.#set = this.#db.prepare(upsertSql)
    this.#delete = this.#db.prepare("DELETE FROM hasten_cache WHERE key = ?")
    this.#pruneAll = this.#db.prepare("DELETE FROM hasten_cache WHERE created_at <= ? OR (expires_at IS NOT NULL AND expires_at <= ?)")
    // Expired rows go whatever their namespace, as `CacheStore.prune` promises.
    this.#pruneNamespace = this.#db.prepare(
      "DELETE FROM hasten_cache WHERE (namespace = ? AND created_at <= ?) OR (expires_at IS NOT NULL AND expires_at <= ?)"
    )
    this.#clear = this.#db.prepare("DELETE FROM hasten_cache")
    this.#stats = this.#db.prepare("SELECT COUNT(*) AS entries, COALESCE(SUM(bytes), 0) AS bytes FROM hasten_cache")
  }

  /** The row under `key`, expired or not. */
  get(key: string): Row | undefined {
    const row = this.#get.get(key) as unknown as [string, string, number, number | null] | undefined
    if (row === undefined) return undefined
    return row[3] === null
      ? { key, namespace: row[0], value: row[1], createdAt: row[2] }
      : { key, namespace: row[0], value: row[1], createdAt: row[2], expiresAt: row[3] }
  }

  /** Inserts or replaces a row (an upsert, atomic under concurrent writers). */
  set(row: Row): void {
    this.#set.run(row.key, row.namespace, row.value, Buffer.byteLength(row.value), row.createdAt, row.expiresAt ?? null)
  }

  /** Inserts or replaces several rows in one transaction (one commit, one WAL append): all or none. */
  setMany(rows: Iterable<Row>): void {
    this.#db.exec("BEGIN IMMEDIATE")
    try {
      for (const row of rows) this.set(row)
      this.#db.exec("COMMIT")
    } catch (error) {
      if (this.#db.isTransaction) this.#db.exec("ROLLBACK")
      throw error
    }
  }

  /** Deletes one row; whether it existed. */
  delete(key: string): boolean {
    return Number(this.#delete.run(key).changes) > 0
  }

  /** Deletes rows created at or before `cutoff`, optionally only in one namespace, and every row expired at `now`. */
  prune(options: { readonly namespace?: string | undefined; readonly cutoff: number; readonly now: number }): number {
    const result = options.namespace === undefined
      ? this.#pruneAll.run(options.cutoff, options.now)
      : this.#pruneNamespace.run(options.namespace, options.cutoff, options.now)
    return Number(result.changes)
  }

  /** Deletes every row. */
  clear(): void {
    this.#clear.run()
  }

  /** Row count and stored bytes. */
  stats(): { readonly entries: number; readonly bytes: number } {
    const row = this.#stats.get() as { entries: number; bytes: number }
    return { entries: Number(row.entries), bytes: Number(row.bytes) }
  }

  /** Runs raw SQL (tests use it to plant corrupt rows). */
  exec(sql: string): void {
    this.#db.exec(sql)
  }

  close(): void {
    if (this.#db.isOpen) this.#db.close()
  }
}
