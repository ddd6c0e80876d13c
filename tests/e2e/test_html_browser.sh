#!/usr/bin/env bash
# The html export as a user sees it: rendered by headless Chromium from a
# file:// URL, with no network.  Asserts the picture, the shared-table
# highlight, the legend and the findings are in the rendered DOM, and that
# a screenshot of the page is not blank.  Exit 0 pass, 1 fail, 77 skip.
set -u

fail() { echo "FAIL test_html_browser: $*" >&2; exit 1; }
skip() { echo "SKIP test_html_browser: $*" >&2; exit 77; }

[ -x build/seams ] || fail "build/seams is missing; run 'make all' first"

browser=$(command -v chromium || command -v chromium-browser || true)
if [ -z "$browser" ] && [ "$(id -u)" = 0 ]; then
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null 2>&1
	browser=$(command -v chromium || true)
fi
[ -n "$browser" ] || skip "chromium is not installed and could not be installed (apt-get install chromium)"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

html="$tmp/demo.html"
build/seams export tests/data/demo.json --format html --output "$html" ||
	fail "seams export --format html exited $?"

chrome() {
	timeout 90 "$browser" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
		--disable-background-networking --disable-component-update --disable-sync \
		--user-data-dir="$(mktemp -d -p "$tmp")" "$@" "file://$html" 2>"$tmp/chrome.log"
}

chrome --dump-dom >"$tmp/dom.html" || fail "chromium --dump-dom failed: $(tail -3 "$tmp/chrome.log")"
# The parser resolved the page into a DOM: the svg is inline, the shared
# table keeps its highlight class and fill, the legend and report are there.
grep -q '<svg' "$tmp/dom.html" || fail "no inline <svg> in the rendered DOM"
grep -q 'class="node table shared-write"' "$tmp/dom.html" ||
	fail "the table written by two services is not highlighted (class shared-write)"
grep -q 'fill="#fecaca"' "$tmp/dom.html" || fail "the shared table is not filled red"
grep -q 'table written by several services' "$tmp/dom.html" || fail "the legend is missing"
grep -q 'data-kind="shared_table"' "$tmp/dom.html" || fail "the shared_table finding is missing"
grep -q 'data-kind="sync_chain"' "$tmp/dom.html" || fail "the sync_chain finding is missing"
grep -q 'public.orders (database shop) is written by 2 services' "$tmp/dom.html" ||
	fail "the finding's title is not rendered"
# Labels stay readable: the picture may shrink only so far (edge labels at
# 12 px or more), then its panel scrolls.
grep -q '<div class="scroll"><svg style="min-width:[0-9]*px"' "$tmp/dom.html" ||
	fail "the svg has no min-width: labels could shrink below 12 px"

png="$tmp/demo.png"
chrome --screenshot="$png" --window-size=1280,900 >/dev/null ||
	fail "chromium --screenshot failed: $(tail -3 "$tmp/chrome.log")"
[ -s "$png" ] || fail "no screenshot written"
[ "$(head -c 8 "$png" | od -An -tx1 | tr -d ' \n')" = "89504e470d0a1a0a" ] || fail "the screenshot is not a PNG"
# A blank 1280x900 page compresses to a few kilobytes; a drawn graph with
# text does not.
size=$(stat -c %s "$png")
[ "$size" -gt 40000 ] || fail "the screenshot is only $size bytes: the page looks blank"

if [ -n "${SEAMS_KEEP_SCREENSHOT:-}" ]; then
	cp "$png" "$SEAMS_KEEP_SCREENSHOT"
fi
echo "PASS test_html_browser (screenshot $size bytes)"
