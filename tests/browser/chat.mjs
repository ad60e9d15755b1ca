// Drives the chat's page in headless Chromium for tests/chat_browser.rs.
//
//   node chat.mjs CHROMIUM URL USER_DATA_DIR
//
// Opens URL in a fresh headless Chromium (the system's, never a download), waits for
// the first entry in #log and prints `welcome TEXT`. Then it reads commands from
// stdin, one a line, and answers each with one line on stdout:
//
//   type TEXT   types TEXT into #line and presses Enter -> `typed VALUE` (what #line
//               holds afterwards: empty if the page sent and cleared it)
//   wait TEXT   waits for an entry of #log whose text is exactly TEXT -> `seen N`
//               (its index)
//   log         -> `log JSON`: for each child element of #log, [its text, how many
//               elements it holds]
//
// At the end of stdin it closes the browser and exits 0. Any failure (a wait past
// its timeout included) prints `error MESSAGE` and exits 1, the browser closed.
// Every wait is bounded.

import { createInterface } from "node:readline";
import { chromium } from "playwright-core";

const [executablePath, url, userDataDir] = process.argv.slice(2);
const TIMEOUT_MS = 20_000;

// This machine has no network: nothing that would reach out.
const ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

let context;

async function main() {
  context = await chromium.launchPersistentContext(userDataDir, {
    executablePath,
    headless: true,
    args: ARGS,
    timeout: TIMEOUT_MS,
  });
  context.setDefaultTimeout(TIMEOUT_MS);
  const page = context.pages()[0] ?? (await context.newPage());
  page.on("pageerror", (e) => console.error(`page error: ${e.message}`));
  await page.goto(url, { timeout: TIMEOUT_MS });
  const first = page.locator("#log > *").first();
  await first.waitFor({ timeout: TIMEOUT_MS });
  console.log(`welcome ${await first.textContent()}`);

  const lines = createInterface({ input: process.stdin, crlfDelay: Infinity });
  for await (const line of lines) {
    const space = line.indexOf(" ");
    const command = space < 0 ? line : line.slice(0, space);
    const arg = space < 0 ? "" : line.slice(space + 1);
    if (command === "type") {
      const input = page.locator("#line");
      await input.click();
      await input.pressSequentially(arg);
      await input.press("Enter");
      console.log(`typed ${await input.inputValue()}`);
    } else if (command === "wait") {
      const index = await page.waitForFunction(
        (text) => {
          const entries = Array.from(document.getElementById("log").children);
          const i = entries.findIndex((e) => e.textContent === text);
          return i < 0 ? null : i;
        },
        arg,
        { timeout: TIMEOUT_MS },
      );
      console.log(`seen ${await index.jsonValue()}`);
    } else if (command === "log") {
      const entries = await page.$$eval("#log > *", (es) =>
        es.map((e) => [e.textContent, e.children.length]),
      );
      console.log(`log ${JSON.stringify(entries)}`);
    } else {
      throw new Error(`unknown command ${JSON.stringify(line)}`);
    }
  }
}

try {
  await main();
  await context.close();
  process.exit(0);
} catch (e) {
  console.log(`error ${String(e.message ?? e).split("\n")[0]}`);
  if (context) {
    await context.close().catch(() => {});
  }
  process.exit(1);
}
