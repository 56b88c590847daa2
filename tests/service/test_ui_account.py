"""The account page in headless Chromium: an admin adds a user, changes its role, disables it
(its session stops), and changes their own password; the service's refusals are shown.
Marked ``integration`` (Chromium, Playwright)."""

from __future__ import annotations

import httpx
import pytest

from .conftest import ADMIN_PASSWORD
from .test_ui_upload_query import _logged_in_page, _serve
from .test_viewer import _wait

pytestmark = pytest.mark.integration


def _row(page, name: str):
    return page.locator(f"#users tr[data-user='{name}']")


def _loaded(page, n: int) -> None:
    _wait(page, f"Number(document.getElementById('account').dataset.loaded || 0) >= {n}")


def test_account_page_manages_users_and_my_password(tmp_path, tiny_package, debian_tool):
    with (
        _serve(tmp_path / "home", [tiny_package.path]) as base,
        _logged_in_page(debian_tool, base) as page,
    ):
        page.click("header nav a[href='/ui/account']")
        page.wait_for_url("**/ui/account")
        _loaded(page, 1)
        assert _row(page, "admin").locator("td").nth(2).inner_text() == "active"

        page.fill("#add-user input[name=username]", "rita")
        page.fill("#add-user input[name=password]", "short")
        page.select_option("#add-user select[name=role]", "radiologist")
        page.click("#add-user button[type=submit]")
        _wait(page, "document.getElementById('users-status').textContent.startsWith('not added')")
        assert "too short" in page.inner_text("#users-status")
        page.fill("#add-user input[name=username]", "rita")
        page.fill("#add-user input[name=password]", "rita's long phrase")
        page.select_option("#add-user select[name=role]", "radiologist")
        page.click("#add-user button[type=submit]")
        _loaded(page, 3)
        assert _row(page, "rita").locator("select.role").input_value() == "radiologist"

        rita = httpx.post(
            f"{base}/api/auth/login", json={"username": "rita", "password": "rita's long phrase"}
        ).json()["access_token"]
        auth = {"Authorization": f"Bearer {rita}"}
        _row(page, "rita").locator("select.role").select_option("viewer")
        _loaded(page, 4)
        assert httpx.get(f"{base}/api/me", headers=auth).json()["role"] == "viewer"
        _row(page, "rita").locator("button.toggle").click()
        _loaded(page, 5)
        assert _row(page, "rita").locator("td").nth(2).inner_text() == "disabled"
        assert httpx.get(f"{base}/api/me", headers=auth).status_code == 401
        # the last admin: refused, with the service's reason on the page
        _row(page, "admin").locator("button.toggle").click()
        _loaded(page, 6)
        assert "last active admin" in page.inner_text("#users-status")
        assert _row(page, "admin").locator("td").nth(2).inner_text() == "active"

        page.fill("#passwd input[name=old_password]", "not my password")
        page.fill("#passwd input[name=password]", "the admin's new phrase")
        page.fill("#passwd input[name=again]", "the admin's new phrase")
        page.click("#passwd button[type=submit]")
        _wait(page, "document.getElementById('passwd-status').textContent !== ''")
        assert page.inner_text("#passwd-status").startswith("not changed")
        page.fill("#passwd input[name=old_password]", ADMIN_PASSWORD)
        page.fill("#passwd input[name=password]", "the admin's new phrase")
        page.fill("#passwd input[name=again]", "the admin's new phrase")
        page.click("#passwd button[type=submit]")
        _wait(page, "document.getElementById('passwd-status').textContent.startsWith('password')")
        ok = httpx.post(
            f"{base}/api/auth/login",
            json={"username": "admin", "password": "the admin's new phrase"},
        )
        assert ok.status_code == 200
        page.reload()  # this page's own session survived the change
        _loaded(page, 1)
        page.screenshot(path=str(tmp_path / "account.png"), full_page=True)
