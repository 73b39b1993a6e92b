"""The retune_model trigger form in a real browser: headless Chromium (Debian's `chromium` and
`chromium-driver`, `make browser`) driven by Selenium against a real Airflow (`airflow
standalone`, see tests/airflow_server.py).

A person logs in, opens retune_model, opens the trigger form, sees an out-of-range trial count
clamped by the form and a bad config name refused, then sets window=reference, force on and 3
trials and triggers. The run must succeed with that conf, and the retune's study and MLflow
parent run (found through the registered version's `retune.parent_run_id` tag) must have used
3 trials. The filled form is saved to test-artifacts/trigger_form.png (and the page, when the
test fails, to test-artifacts/trigger_form_failure.png).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from airflow_server import ADMIN, CONFIG_N_TRIALS, ROOT, AirflowServer, airflow_server  # type: ignore[import-not-found]

pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
ARTIFACTS = ROOT / "test-artifacts"
N_TRIALS = 3
assert N_TRIALS != CONFIG_N_TRIALS, "the form's value must differ from the config's to show it is used"
CHROMIUM_FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1400,2200",  # tall enough for the whole dialog in the screenshot
]
TRIGGER_BUTTON = "button[aria-label='Trigger Dag']"  # opens the dialog
SUBMIT_BUTTON = "button[data-testid=trigger-dag-submit]"  # the dialog's own Trigger
CLOSE_BUTTON = "button[data-scope=dialog][data-part=close-trigger]"


@pytest.fixture
def browser() -> Iterator[Any]:
    """Headless Chromium under chromedriver, both Debian's; never a downloaded driver."""
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.is_file()]
    if missing:
        reason = f"{', '.join(missing)} missing: install Debian's chromium and chromium-driver (`make browser`, as root)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason}; CI must run the browser test")
        pytest.skip(reason)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="retune-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in [*CHROMIUM_FLAGS, f"--user-data-dir={profile}"]:
        options.add_argument(flag)
    # An explicit driver path: Selenium Manager (which could download one) is never run.
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    driver.implicitly_wait(0)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def _wait(what: str, check: Callable[[], Any], timeout: float = 30) -> Any:
    """Poll ``check`` until it returns something truthy (exceptions count as not yet)."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            result = check()
        except Exception as err:  # noqa: BLE001 - a stale or absent element: try again
            last = err
        else:
            if result:
                return result
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}" + (f" (last error: {last!r})" if last else ""))


def _set_text(d: Any, name: str, value: str) -> str:
    """Replace a form field's text, then leave it (number fields clamp and commit on blur)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    field = d.find_element(By.NAME, name)
    field.click()
    field.send_keys(Keys.CONTROL, "a")
    field.send_keys(Keys.BACKSPACE)
    field.send_keys(value)
    field.send_keys(Keys.TAB)
    return str(d.find_element(By.NAME, name).get_attribute("value"))


def _page_text(d: Any) -> str:
    from selenium.webdriver.common.by import By

    return str(d.find_element(By.TAG_NAME, "body").text)


def _open_trigger_form(d: Any) -> None:
    from selenium.webdriver.common.by import By

    _wait("the DAG page", lambda: d.find_element(By.CSS_SELECTOR, TRIGGER_BUTTON)).click()
    _wait("the trigger form", lambda: d.find_element(By.NAME, "element_config"))


def _trigger_from_the_form(d: Any, server: AirflowServer) -> dict:
    """Log in, check the form, see bad values refused, trigger with the test's values; the run."""
    from selenium.webdriver.common.by import By

    # Log in through the SimpleAuthManager's page, which leads back to the DAG.
    d.get(f"{server.url}/dags/retune_model")
    _wait("the login page", lambda: d.find_element(By.NAME, "username")).send_keys(ADMIN)
    d.find_element(By.NAME, "password").send_keys(server.password())
    d.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    _open_trigger_form(d)

    # Every param shows its title and description in "Run Parameters". The dialog's inputs
    # exist before its text is shown (it fades in): wait for the titles, then name any missing.
    labels = ("Model config", "Training window", "Window end", "Force retune", "Trials", "Timeout (seconds)", "Pruner")
    try:
        _wait("every param's title in the form", lambda: all(label in _page_text(d) for label in labels), timeout=20)
    except AssertionError:
        pass  # the asserts below say which title is missing
    text = _page_text(d)
    for label in labels:
        assert label in text, f"{label!r} missing from the trigger form"
    assert "RETUNE_CONFIG_DIR" in text, "the config's description says where configs live"

    # Bad values: the form clamps a trial count into its range; the server refuses a bad
    # config name, naming the param, and creates no run.
    assert _set_text(d, "element_n_trials", "0") == "1"
    assert _set_text(d, "element_timeout", "100000") == "86400"
    _set_text(d, "element_config", "Bad Name!")
    d.find_element(By.CSS_SELECTOR, SUBMIT_BUTTON).click()
    _wait("the refusal of a bad config name", lambda: "Invalid input for param config" in _page_text(d))
    assert server.runs("retune_model") == [], "a refused form must not create a run"

    # A fresh form for the real values. Closing the dialog resets its values, but Airflow 3.3
    # shows the last error again when it is reopened, so the page is reloaded too.
    d.find_element(By.CSS_SELECTOR, CLOSE_BUTTON).click()
    _wait("the dialog to close", lambda: not d.find_elements(By.NAME, "element_config"))
    d.refresh()
    _open_trigger_form(d)
    assert d.find_element(By.NAME, "element_config").get_attribute("value") == "demo"
    assert d.find_element(By.NAME, "element_n_trials").get_attribute("value") == ""
    assert "Invalid input" not in _page_text(d)

    d.find_element(By.ID, "element_window").click()
    options = _wait(
        "the window options",
        lambda: [o for o in d.find_elements(By.CSS_SELECTOR, "[role=option]") if o.text.startswith("Reference")],
    )
    options[0].click()
    assert "Reference: the config's reference period" in d.find_element(By.ID, "element_window").text
    force = d.find_element(By.NAME, "element_force")
    assert not force.is_selected()
    d.find_element(By.ID, "switch:element_force").click()
    _wait("force to be on", force.is_selected)
    assert _set_text(d, "element_n_trials", str(N_TRIALS)) == str(N_TRIALS)
    d.execute_script("document.activeElement && document.activeElement.blur()")
    ARTIFACTS.mkdir(exist_ok=True)
    d.save_screenshot(str(ARTIFACTS / "trigger_form.png"))

    d.find_element(By.CSS_SELECTOR, SUBMIT_BUTTON).click()
    runs = _wait("the triggered run", lambda: server.runs("retune_model"))
    assert len(runs) == 1, runs
    return server.wait_for_run("retune_model", runs[0]["dag_run_id"])


def test_trigger_form_runs_a_retune_with_the_form_values(browser: Any, tmp_path: Path) -> None:
    with airflow_server(tmp_path) as server:
        try:
            run = _trigger_from_the_form(browser, server)
        except BaseException:
            ARTIFACTS.mkdir(exist_ok=True)
            browser.save_screenshot(str(ARTIFACTS / "trigger_form_failure.png"))
            raise
        states = {ti["task_id"]: ti["state"] for ti in server.task_instances("retune_model", run["dag_run_id"])}

    conf = run["conf"]
    assert conf["n_trials"] == N_TRIALS
    assert conf["window"] == "reference"
    assert conf["force"] is True
    assert conf["trigger"] == "manual"
    assert run["triggering_user_name"] == ADMIN
    assert states.get("retune.register") == "success", f"the retune did not register a model: {states}"

    cl = server.mlflow_client()
    versions = cl.search_model_versions("name='demo-demand'")
    assert len(versions) == 1, [v.version for v in versions]
    tags = versions[0].tags
    assert tags["airflow.run_id"] == run["dag_run_id"]
    assert tags["retune.trigger"] == "manual"
    parent = cl.get_run(tags["retune.parent_run_id"])
    assert parent.data.params["n_trials"] == str(N_TRIALS), parent.data.params
    assert len(server.study(tags["retune.study"]).trials) == N_TRIALS
    children = cl.search_runs([parent.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    assert len(children) == N_TRIALS, f"{len(children)} trial runs under the parent run, want {N_TRIALS}"
