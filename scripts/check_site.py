#!/usr/bin/env python3
"""Open the documentation site in a real headless browser and check that math and figures rendered.

A manual check, not part of ``make test`` (it needs Chromium: ``apt-get install chromium`` on Debian).
It builds the site with ``mkdocs build --strict`` into a temporary folder (or takes ``--site DIR``),
serves it on 127.0.0.1, and opens each page in headless Chromium with every host but 127.0.0.1
unreachable, so that a page that needs the network fails here as it would offline. For each page it
reports, after the page's scripts have run:

- math: how many of the formulas that pymdownx.arithmatex marked MathJax typeset (``mjx-container``
  elements in them) and how many came out as MathJax errors;
- figures: how many of the page's images loaded (``naturalWidth > 0``);

and, for the whole run, that MathJax and its fonts came from the site itself. Screenshots of each page
go to a temporary folder (or ``--out``, outside the repository): never into git.

Usage:

    python scripts/check_site.py                         # build, serve, check the default pages
    python scripts/check_site.py --site site             # check what make docs built
    python scripts/check_site.py --pages api/guides.html tour/10-what-a-model-learned.html

Exit code: 0 when every page passed, 1 when a check failed, 2 on bad usage (no Chromium, build failed).
"""

from __future__ import annotations

import argparse
import functools
import html.parser
import http.server
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PAGES = ("api/objectives.html", "index.html", "tour/08-models-and-guides.html")
CHECK = "check-site"  # the query string that asks the server to add the measuring script
# Runs once the page has loaded and MathJax has typeset it; writes what it found onto <body>.
PROBE = """<script>
window.addEventListener("load", function () {
  function report() {
    var images = Array.prototype.slice.call(document.querySelectorAll("article img"));
    var b = document.body;
    b.setAttribute("data-images", images.length);
    b.setAttribute("data-images-loaded", images.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length);
    b.setAttribute("data-math", document.querySelectorAll(".arithmatex").length);
    var typeset = Array.prototype.slice.call(document.querySelectorAll(".arithmatex")).filter(function (m) {
      return m.querySelector("mjx-container") !== null;
    });
    b.setAttribute("data-math-typeset", typeset.length);
    b.setAttribute("data-math-errors", document.querySelectorAll("mjx-merror").length);
    b.setAttribute("data-mathjax", window.MathJax && window.MathJax.version ? window.MathJax.version : "none");
    b.setAttribute("data-checked", "yes");
  }
  var startup = window.MathJax && window.MathJax.startup && window.MathJax.startup.promise;
  if (startup) { startup.then(report, report); } else { report(); }
});
</script>"""


class Handler(http.server.SimpleHTTPRequestHandler):
    """Serves the site, adds the probe to pages asked for with ?check-site, and records every request."""

    requests: list[tuple[str, int]] = []

    def do_GET(self):
        path, _, query = self.path.partition("?")
        if query == CHECK and path.endswith(".html"):
            file = Path(self.translate_path(path))
            if file.is_file():
                body = file.read_text(encoding="utf-8").replace("</body>", PROBE + "</body>", 1).encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                self.requests.append((path, 200))
                return
        super().do_GET()

    def log_request(self, code="-", size="-"):
        self.requests.append((self.path.partition("?")[0], int(code) if str(code).isdigit() else 0))

    def log_message(self, format, *args):  # quiet: the summary says what matters
        pass


class BodyAttributes(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.attributes: dict[str, str] = {}

    def handle_starttag(self, tag, attrs):
        if tag == "body" and not self.attributes:
            self.attributes = {k: v or "" for k, v in attrs}


def chromium_binary(given: str | None) -> str | None:
    for name in ([given] if given else ["chromium", "chromium-browser", "google-chrome"]):
        found = shutil.which(name)
        if found:
            return found
    return None


def chromium(binary: str, url: str, *extra: str, timeout: float = 120) -> subprocess.CompletedProcess:
    args = [binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
            "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1", *extra, url]
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout)


def build(site: Path) -> bool:
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
                          cwd=ROOT, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        print(done.stdout + done.stderr, file=sys.stderr)
    return done.returncode == 0


def check_page(binary: str, base: str, page: str, out: Path, budget: int) -> list[str]:
    """The failures found on one page (empty when it passed), after printing what was found."""
    dom = chromium(binary, f"{base}/{page}?{CHECK}", "--dump-dom", f"--virtual-time-budget={budget}")
    parser = BodyAttributes()
    parser.feed(dom.stdout)
    found = parser.attributes
    shot = out / (page.replace("/", "_").removesuffix(".html") + ".png")
    chromium(binary, f"{base}/{page}", f"--screenshot={shot}", "--window-size=1280,1600", "--hide-scrollbars",
             f"--virtual-time-budget={budget}")
    if found.get("data-checked") != "yes":
        print(f"{page}: the page did not finish loading (chromium exit {dom.returncode})")
        return [f"{page}: not loaded: {dom.stderr.strip().splitlines()[-1:] or ''}"]
    math, typeset, errors = (int(found[k]) for k in ("data-math", "data-math-typeset", "data-math-errors"))
    images, loaded = int(found["data-images"]), int(found["data-images-loaded"])
    print(f"{page}: math {typeset} of {math} formulas typeset by MathJax {found['data-mathjax']}, {errors} errors; "
          f"images {loaded} of {images} loaded; screenshot {shot if shot.is_file() else 'not written'}")
    failures = []
    if typeset < math or errors:
        failures.append(f"{page}: {math - typeset} formulas not typeset, {errors} MathJax errors")
    if loaded < images:
        failures.append(f"{page}: {images - loaded} of {images} images did not load")
    return failures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--site", type=Path, help="a built site to check (default: build one into a temporary folder)")
    parser.add_argument("--pages", nargs="+", default=list(PAGES), help=f"pages to open (default: {' '.join(PAGES)})")
    parser.add_argument("--out", type=Path, help="folder for the screenshots, outside the repository (default: a new temporary one)")
    parser.add_argument("--chromium", help="the browser binary (default: chromium on PATH)")
    parser.add_argument("--budget", type=int, default=20000, help="virtual milliseconds each page may run (default 20000)")
    args = parser.parse_args(argv)

    binary = chromium_binary(args.chromium)
    if binary is None:
        print("check_site: no Chromium found; on Debian: apt-get install chromium (or pass --chromium PATH).", file=sys.stderr)
        return 2
    out = (args.out or Path(tempfile.mkdtemp(prefix="ppl-vae-site-check-"))).resolve()
    if out.is_relative_to(ROOT):
        print(f"check_site: {out} is inside the repository; screenshots stay out of git, so choose a folder outside it.",
              file=sys.stderr)
        return 2
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="ppl-vae-site-"))
    site = args.site.resolve() if args.site else work / "site"
    if args.site is None:
        print(f"building the site into {site} ...", flush=True)
        if not build(site):
            print("check_site: mkdocs build --strict failed (above).", file=sys.stderr)
            return 2
    if not (site / "index.html").is_file():
        print(f"check_site: {site} holds no built site (no index.html).", file=sys.stderr)
        return 2

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(site)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        failures = []
        for page in args.pages:
            if not (site / page).is_file():
                failures.append(f"{page}: no such page in {site}")
                print(failures[-1])
                continue
            failures += check_page(binary, base, page, out, args.budget)
    finally:
        server.shutdown()
        shutil.rmtree(work, ignore_errors=True)

    served = sorted({path for path, code in Handler.requests if "/assets/mathjax/" in path and code == 200})
    fonts = [path for path in served if path.endswith(".woff")]
    missing = sorted({path for path, code in Handler.requests if code == 404})
    print(f"MathJax served by the site itself: {len(served)} files ({len(fonts)} fonts) from assets/mathjax/; "
          f"every other host was unreachable to the browser")
    if missing:
        failures.append(f"requests the site could not answer (404): {', '.join(missing)}")
    if not served:
        failures.append("no MathJax file was requested from the site")
    print(f"screenshots in {out}")
    for failure in failures:
        print(f"FAILED: {failure}")
    print("check_site: " + ("all pages passed" if not failures else f"{len(failures)} failures"))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
