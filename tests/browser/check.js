// Opens a flame graph SVG in Chromium (Debian's, through playwright-core)
// and prints what a user would see, as one JSON object on stdout:
//   node check.js FILE.svg [STEP...]
// Steps, run in order after the page has loaded:
//   search:TERM     run the graph's search for TERM (as Ctrl-F does)
//   zoom:NAME       click the frame whose tooltip starts with "NAME ("
//   unzoom          click Reset Zoom
//   measure:N       load the page N more times, report each load time
//   screenshot:PNG  save what the page shows
// Output: {"loadMs", "errors": [...], "steps": [{"step", "matched",
// "frames", "titles"?}], "loads": [...]}.
"use strict";
const fs = require("fs");
const os = require("os");
const path = require("path");
const { chromium } = require("playwright-core");

async function main() {
    const [file, ...steps] = process.argv.slice(2);
    const url = "file://" + path.resolve(file);
    const profile = fs.mkdtempSync(path.join(os.tmpdir(), "stoke-chromium-"));
    const context = await chromium.launchPersistentContext(profile, {
        executablePath: process.env.STOKE_CHROMIUM || "/usr/bin/chromium",
        headless: true,
        args: [
            "--no-sandbox",
            "--disable-background-networking",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-component-update",
            "--disable-sync",
        ],
    });
    const errors = [];
    const page = context.pages()[0] || (await context.newPage());
    // A graph of every frame can take a minute to load.
    page.setDefaultNavigationTimeout(180000);
    page.on("pageerror", (e) => errors.push("page error: " + e.message));
    page.on("console", (m) => {
        if (m.type() === "error") errors.push("console error: " + m.text());
    });
    // Searching opens a prompt; the term is given to it.
    let term = "";
    page.on("dialog", (d) => d.accept(term));
    const load = async () => {
        const start = Date.now();
        await page.goto(url, { waitUntil: "load" });
        return Date.now() - start;
    };
    const state = () =>
        page.evaluate(() => {
            const matched = document.getElementById("matched").textContent;
            const frames = document.getElementById("frames").children;
            const titles = [];
            for (const g of frames) {
                if (!g.classList.contains("hide")) titles.push(g.querySelector("title").textContent);
            }
            return { matched, frames: frames.length, titles };
        });
    const out = { loadMs: await load(), errors, steps: [], loads: [] };
    for (const step of steps) {
        const [kind, arg] = [step.split(":")[0], step.slice(step.indexOf(":") + 1)];
        if (kind === "search") {
            term = arg;
            // Ctrl-F during a search resets it; the next one asks again.
            const active = await page.evaluate(() => document.getElementById("search").classList.contains("show"));
            if (active) await page.keyboard.press("Control+F");
            await page.keyboard.press("Control+F");
        } else if (kind === "zoom") {
            const handle = await page.evaluateHandle((name) => {
                for (const g of document.getElementById("frames").children) {
                    if (g.querySelector("title").textContent.startsWith(name + " (")) return g.querySelector("rect");
                }
                return null;
            }, arg);
            const rect = handle.asElement();
            if (!rect) throw new Error("no frame named " + arg);
            await rect.dispatchEvent("click");
        } else if (kind === "unzoom") {
            await page.evaluate(() => document.getElementById("unzoom").dispatchEvent(new MouseEvent("click", { bubbles: true })));
        } else if (kind === "screenshot") {
            await page.screenshot({ path: arg });
            continue;
        } else if (kind === "measure") {
            for (let i = 0; i < Number(arg); i++) out.loads.push(await load());
            continue;
        } else {
            throw new Error("unknown step " + step);
        }
        out.steps.push({ step, ...(await state()) });
    }
    await context.close();
    fs.rmSync(profile, { recursive: true, force: true });
    process.stdout.write(JSON.stringify(out) + "\n");
}

main().catch((e) => {
    process.stderr.write(String(e && e.stack ? e.stack : e) + "\n");
    process.exit(1);
});
