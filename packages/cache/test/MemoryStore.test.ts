import { MemoryStore } from "@hasten/cache"
import { conformance } from "./CacheStoreConformance.js"

conformance("memory", MemoryStore.layer())
