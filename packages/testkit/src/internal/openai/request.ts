/**
 * Reading an OpenAI request: its JSON body, and the request the responder is asked.
 * @since 0.1.0
 */
import type { ResponderRequest } from "../../SimulatorOptions.js"
import { parseJson, readBody } from "../engine/http.js"
import type { RouteContext } from "../engine/route.js"
import { invalid } from "./errors.js"
import type { ChatInput, Sampling } from "./validation.js"

/** What the responder is asked for a chat or text completion. */
export const responderRequest = (
  context: RouteContext,
  input: ChatInput | (Sampling & { prompt: string }),
  body: unknown
): ResponderRequest => ({
  api: "openai",
  route: context.route,
  model: input.model,
  messages: "messages" in input ? input.messages : [],
  ...("prompt" in input ? { prompt: input.prompt } : {}),
  ...(input.maxTokens !== undefined ? { maxTokens: input.maxTokens } : {}),
  ...(input.temperature !== undefined ? { temperature: input.temperature } : {}),
  ...(input.stop !== undefined ? { stop: input.stop } : {}),
  body
})

/** The parsed JSON body, or `undefined` after answering 400. */
export const readJson = async (context: RouteContext): Promise<unknown | undefined> => {
  const parsed = parseJson(await readBody(context.request))
  if (!parsed.ok) {
    invalid(
      context,
      `We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP library correctly. The OpenAI API expects a JSON payload.) ${parsed.message}`
    )
    return undefined
  }
  return parsed.value
}
