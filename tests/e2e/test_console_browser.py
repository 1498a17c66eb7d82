"""The web console in a real browser (Debian's Chromium driven by Playwright) on the local stack:
sign in, pick a feature and its parameters, drop real photos, watch the batch run, download a
result and the ZIP, page the ledger, retry the failed images, see errors, cancel a batch.

CONSOLE_SCREENSHOTS=<dir> keeps the two screenshots the README shows (running and finished)."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import re
import shutil
import time
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

if TYPE_CHECKING:
    from tests.e2e.conftest import LocalApi

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

PHOTOS = sorted((Path(__file__).resolve().parents[1] / "fixtures" / "corpus" / "photos").iterdir())
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# Without the background-networking flags Chromium keeps dialling Google on a closed network.
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
JUNK = 4  # files that claim to be JPEGs and are not: they fail, are refunded, can be retried
QUOTA = 30
BATCH_SECONDS = 120_000  # Playwright timeouts are in milliseconds


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail("Chromium is missing: apt-get install chromium (.ci/run does it)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(accept_downloads=True, viewport={"width": 1280, "height": 900})
    opened = context.new_page()
    problems: list[str] = []
    opened.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    opened.on("console", lambda message: problems.append(message.text)
              if message.type == "error" and "Content-Security-Policy" in message.text else None)
    yield opened
    context.close()
    assert not problems, problems  # no script error and nothing the policy had to block


def _shot(page: Page, name: str) -> None:
    directory = os.environ.get("CONSOLE_SCREENSHOTS")
    if directory:
        page.screenshot(path=str(Path(directory) / name), full_page=True)


def _sign_in(page: Page, base_url: str) -> str:
    user = f"console-{uuid.uuid4().hex[:8]}"
    page.goto(base_url + "/")
    page.get_by_label("User id").fill(user)
    page.get_by_label("Quota").fill(str(QUOTA))
    page.get_by_label("Plan").select_option("pro")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_text(f"Balance: {QUOTA} (plan pro)")).to_be_visible()
    return user


def _drop(page: Page, files: list[tuple[str, str, bytes]]) -> None:
    """Drag files onto the drop zone, as a person dragging them from a file manager."""
    payload = [{"name": n, "type": t, "data": base64.b64encode(b).decode()} for n, t, b in files]
    transfer = page.evaluate_handle("""(files) => {
        const transfer = new DataTransfer();
        for (const f of files) {
            const bytes = Uint8Array.from(atob(f.data), (c) => c.charCodeAt(0));
            transfer.items.add(new File([bytes], f.name, { type: f.type }));
        }
        return transfer;
    }""", payload)
    zone = page.get_by_test_id("dropzone")
    zone.dispatch_event("dragover", {"dataTransfer": transfer})
    zone.dispatch_event("drop", {"dataTransfer": transfer})


def _mime(path: Path) -> str:
    return "image/png" if path.suffix == ".png" else "image/jpeg"


def _add_images(page: Page) -> int:
    dropped = [(p.name, _mime(p), p.read_bytes()) for p in PHOTOS[:7]]
    dropped += [(f"broken_{i}.jpg", "image/jpeg", b"not a jpeg " * 50) for i in range(JUNK)]
    _drop(page, dropped)
    page.get_by_label("Choose images").set_input_files([str(p) for p in PHOTOS[7:]])
    total = len(PHOTOS) + JUNK
    rows = page.get_by_role("list", name="Images to process").get_by_role("listitem")
    expect(rows).to_have_count(total)
    expect(rows.filter(has_text="uploaded")).to_have_count(total, timeout=60_000)
    bars = page.locator("li.upload progress")
    assert all(bars.nth(i).get_attribute("value") == "100" for i in range(total))
    return total


def _wait_running_then_shoot(page: Page, total: int) -> None:
    """Catch the grid mid-run (some images done, some not) for the screenshot."""
    status = page.get_by_role("status").filter(has_text=re.compile("Running|Finished"))
    expect(status).to_be_visible()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        done = page.locator("li.item[data-status=success], li.item[data-status=failed]").count()
        if 0 < done < total or status.inner_text().startswith("Finished"):
            break
        time.sleep(0.1)
    _shot(page, "console-running.png")


def _counter(page: Page, label: str) -> str:
    return page.get_by_label("Counters").locator(f".counter.{label} dd").inner_text()


def _check_finished_grid(page: Page, photos: int) -> None:
    grid = page.get_by_role("list", name="Batch images").get_by_role("listitem")
    expect(grid).to_have_count(photos + JUNK)
    assert (_counter(page, "succeeded"), _counter(page, "failed")) == (str(photos), str(JUNK))
    expect(grid.filter(has_text="success")).to_have_count(photos)
    failed = grid.filter(has_text="failed")
    expect(failed).to_have_count(JUNK)
    for i in range(JUNK):
        assert "(not_an_image)" in failed.nth(i).locator(".item-error").inner_text()
    page.wait_for_function("""() => [...document.querySelectorAll('img.preview')]
        .every((img) => img.complete && img.naturalWidth > 0)""")
    assert page.locator("img.preview").count() == photos
    # every photo's own thumbnail, and a placeholder for the files that are no image at all
    assert page.locator("img.thumb").count() == photos
    expect(failed.get_by_text("no preview")).to_have_count(JUNK)


def _download(page: Page, button: str) -> tuple[str, bytes]:
    with page.expect_download() as info:
        page.get_by_role("button", name=button).click()
    download = info.value
    path = download.path()
    return download.suggested_filename, Path(path).read_bytes()


def _ledger_kinds(page: Page) -> list[str]:
    rows = page.get_by_role("table", name="Ledger").locator("tbody tr")
    return [rows.nth(i).locator("td").nth(1).inner_text() for i in range(rows.count())]


def test_a_person_runs_a_batch_in_the_console(page: Page, local_api: LocalApi) -> None:
    # Given a signed-in person with the Basic clean feature and its parameters set
    _sign_in(page, local_api.base_url)
    page.get_by_role("combobox", name="Feature").select_option("basic_clean")
    page.get_by_label("Brightness").fill("10")
    page.get_by_label("Contrast").fill("5")
    # When she drops photos (and four broken files), then starts the batch
    total = _add_images(page)
    page.get_by_role("button", name="Start batch").click()
    _wait_running_then_shoot(page, total)
    # Then the grid finishes with every photo processed and previewed, the broken ones explained
    expect(page.get_by_text("Finished: partial success")).to_be_visible(timeout=BATCH_SECONDS)
    _check_finished_grid(page, len(PHOTOS))
    # (each photo keeps its charge, each broken file is refunded)
    expect(page.get_by_text(f"Balance: {QUOTA - len(PHOTOS)} (plan pro)")).to_be_visible()
    _shot(page, "console-finished.png")
    # And one result and the whole ZIP download
    name, data = _download(page, "Download result_1.jpg")
    assert name == "result_1.jpg" and data[:3] == b"\xff\xd8\xff"
    name, data = _download(page, "Download ZIP")
    task_id = page.locator("#batch-title code").inner_text()
    assert name == f"batch_{task_id}.zip"
    entries = zipfile.ZipFile(io.BytesIO(data)).namelist()
    assert len([entry for entry in entries if entry.startswith("result_")]) == len(PHOTOS)


def _run_batch_with_failures(page: Page, base_url: str) -> None:
    _sign_in(page, base_url)
    _add_images(page)
    page.get_by_role("button", name="Start batch").click()
    expect(page.get_by_text("Finished: partial success")).to_be_visible(timeout=BATCH_SECONDS)


def test_retry_failed_pages_the_ledger_and_shows_errors(page: Page, local_api: LocalApi) -> None:
    # Given a finished batch whose four broken files failed
    _run_batch_with_failures(page, local_api.base_url)
    # When the person retries the failed images
    page.get_by_role("button", name="Retry failed").click()
    expect(page.get_by_text(f"已重新提交{JUNK}个失败项")).to_be_visible()
    expect(page.get_by_text("Finished: partial success")).to_be_visible(timeout=BATCH_SECONDS)
    # Then the ledger has grant, two charges and eight refunds: two pages of ten
    expect(page.get_by_text(f"Balance: {QUOTA - len(PHOTOS)} (plan pro)")).to_be_visible()
    expect(page.get_by_role("table", name="Ledger").locator("tbody tr")).to_have_count(10)
    page.get_by_role("button", name="Older").click()
    expect(page.get_by_role("table", name="Ledger").locator("tbody tr")).to_have_count(1)
    assert _ledger_kinds(page) == ["grant"]
    page.get_by_role("button", name="Newer").click()
    expect(page.get_by_role("table", name="Ledger").locator("tbody tr")).to_have_count(10)
    assert set(_ledger_kinds(page)) == {"charge", "refund"}
    # And a refused request shows the contract's message and key without blocking the page
    page.get_by_role("combobox", name="Feature").select_option("watermark")
    page.get_by_role("button", name="Start batch").click()
    notice = page.get_by_role("listitem").filter(has_text="配额不足，请充值")
    expect(notice).to_be_visible()
    expect(notice.locator("code")).to_have_text("quota_insufficient")
    notice.get_by_role("button", name=re.compile("^Dismiss")).click()
    expect(notice).to_have_count(0)


def test_cancel_refunds_what_did_not_run(page: Page, local_api: LocalApi) -> None:
    # Given a running batch of fourteen images
    _sign_in(page, local_api.base_url)
    _add_images(page)
    page.get_by_role("button", name="Start batch").click()
    cancel = page.get_by_role("button", name="Cancel batch")
    expect(cancel).to_be_enabled()
    # When the person cancels it
    cancel.click()
    # Then it ends cancelled, the refund is announced, and the balance shows what was kept
    expect(page.get_by_text("Finished: cancelled")).to_be_visible(timeout=BATCH_SECONDS)
    expect(page.get_by_text(re.compile(r"任务已取消，返还\d+配额"))).to_be_visible()
    done = int(_counter(page, "succeeded"))
    assert int(_counter(page, "cancelled")) > 0
    expect(page.get_by_text(f"Balance: {QUOTA - done} (plan pro)")).to_be_visible()


def test_the_docs_page_authorizes_and_tries_routes(page: Page, local_api: LocalApi) -> None:
    # Given a token, and the Swagger UI page
    _, token = local_api.make_user(quota=7)
    page.goto(local_api.base_url + "/api/docs")
    # When the person authorizes with it and tries GET /api/quota
    page.get_by_role("button", name="Authorize").first.click()
    page.locator(".modal-ux input").fill(token)
    page.locator(".modal-ux button.modal-btn.auth.authorize").click()
    page.locator(".modal-ux button.btn-done").click()
    quota = page.locator("#operations-account-getQuota")
    quota.locator(".opblock-summary").click()
    quota.get_by_role("button", name="Try it out").click()
    quota.get_by_role("button", name="Execute").click()
    # Then the live response is the caller's own balance
    live = quota.locator(".live-responses-table")
    expect(live.locator("td.response-col_status").last).to_have_text("200")
    expect(live.locator(".response-col_description pre").first).to_contain_text('"balance": 7')
    # And a money-moving route offers no Idempotency-Key to replay: the field starts empty
    create = page.locator("#operations-tasks-createBatchTask")
    create.locator(".opblock-summary").click()
    create.get_by_role("button", name="Try it out").click()
    expect(create.locator("tr[data-param-name='Idempotency-Key'] input")).to_have_value("")


def test_hosted_ui_sign_in_uses_the_code_flow_with_pkce(page: Page, local_api: LocalApi) -> None:
    """On AWS the console signs in through the Cognito Hosted UI. Here the browser is given that
    configuration, and stand-ins for the Hosted UI's two endpoints check what it sends."""
    _, token = local_api.make_user(quota=3)
    base = local_api.base_url
    seen: dict[str, str] = {}
    config = {"auth": "cognito", "client_id": "console-client", "scopes": ["openid", "email"],
              "authorize_url": f"{base}/hosted-ui/oauth2/authorize",
              "token_url": f"{base}/hosted-ui/oauth2/token"}

    def authorize(route: Any) -> None:
        query = parse_qs(urlsplit(route.request.url).query)
        seen.update({name: values[0] for name, values in query.items()})
        route.fulfill(status=302, headers={"Location": f"{base}/?code=the-code&state="
                                                       f"{seen['state']}"})

    def exchange(route: Any) -> None:
        form = parse_qs(route.request.post_data or "")
        verifier = form["code_verifier"][0]
        digest = hashlib.sha256(verifier.encode()).digest()
        challenge = base64.urlsafe_b64encode(digest).decode().rstrip("=")
        valid = (form["code"][0] == "the-code" and challenge == seen["code_challenge"]
                 and form["grant_type"][0] == "authorization_code"
                 and form["client_id"][0] == "console-client")
        route.fulfill(status=200 if valid else 400, content_type="application/json",
                      body=json.dumps({"id_token": token} if valid else {"error": "invalid_grant"}))

    page.route("**/console/config.json", lambda route: route.fulfill(
        status=200, content_type="application/json", body=json.dumps(config)))
    page.route("**/hosted-ui/oauth2/authorize?*", authorize)
    page.route("**/hosted-ui/oauth2/token", exchange)
    # When the person presses the sign-in button and the Hosted UI sends her back with a code
    page.goto(base + "/")
    page.get_by_role("button", name="Sign in with PixelBatch account").click()
    # Then the code and its verifier become her session, and the address is clean again
    expect(page.get_by_text("Balance: 3 (plan pro)")).to_be_visible()
    assert (seen["response_type"], seen["code_challenge_method"]) == ("code", "S256")
    assert seen["redirect_uri"] == base + "/" and seen["scope"] == "openid email"
    assert page.url == base + "/"
