// Server-Sent Events read with fetch, because EventSource cannot send an
// Authorization header and the token must never go in a URL. The parser
// follows the HTML standard's event-stream rules for the fields Troupe
// sends (event, data, id; comments ignored), over a ReadableStream.

/**
 * Parse an event-stream from `body` (a ReadableStream of bytes), calling
 * `onEvent({ event, data, id })` per dispatched event. Resolves when the
 * stream ends; rejects on a network error or abort.
 */
export async function readEvents(body, onEvent) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  let event = { event: "message", data: [], id: null };
  const line = (text) => {
    if (text === "") {
      // A blank line dispatches what has accumulated (if any data).
      if (event.data.length) onEvent({ event: event.event, data: event.data.join("\n"), id: event.id });
      event = { event: "message", data: [], id: null };
      return;
    }
    if (text.startsWith(":")) return; // keep-alive comment
    const colon = text.indexOf(":");
    const field = colon < 0 ? text : text.slice(0, colon);
    let value = colon < 0 ? "" : text.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "event") event.event = value;
    else if (field === "data") event.data.push(value);
    else if (field === "id") event.id = value;
  };
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    // Lines end in \n, \r\n or \r; keep the unfinished tail for the next chunk.
    const lines = buffer.split(/\r\n|\n|\r(?!$)/);
    buffer = lines.pop();
    lines.forEach(line);
  }
}
