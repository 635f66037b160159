import { getLlama, LlamaLogLevel } from "node-llama-cpp"
import { readFileSync } from "node:fs"
const llama = await getLlama({ gpu: false, build: "never", logLevel: LlamaLogLevel.error })
const model = await llama.loadModel({ modelPath: "/work/shared/models/" + process.argv[2] })
const text = process.argv[3]
console.log("tokenizing", JSON.stringify(text))
console.log(model.tokenize(text, false).length)
