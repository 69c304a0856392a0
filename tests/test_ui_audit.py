"""Every tab as people see it, in Debian's Chromium: results in each tab, a picture of each at
desktop and phone width, light and dark (tests/artifacts/screens/, not compared pixel by pixel),
an axe-core audit of each, and the keyboard on the project's own controls.

Axe's violations are split in two. On the project's own markup (metric cards, alignment view,
batch summary, the browser component, example labels) none may be serious or critical. The rest
come from Gradio's components: a bare Gradio page with the same components, built here, is
audited the same way, and each rule it shares with the app is Gradio's own; those must be listed,
by rule and Gradio version, in the README's accessibility section (not silenced)."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import gradio as gr
import pytest

from tests.running_app import ROOT, free_port
from tests.browser_page import ARGS, CHROMIUM
from tests.test_browser import TINY_FP32

TABS = ("Transcribe", "Compare", "Evaluate", "Batch", "Browser", "Arena", "Models")
WIDTHS = {"desktop": (1280, 900), "phone": (390, 844)}
THEMES = ("light", "dark")
SCREENS = Path(os.environ.get("SCREENS_DIR") or ROOT / "tests" / "artifacts" / "screens")
SERIOUS = {"serious", "critical"}
# The project's own markup: what the project writes as HTML, its component, its example labels.
OWN = (".metric-cards, .run-environment, .alignment, .batch-summary, .basr, #transcribe-samples, #compare-samples, "
       "#arena-revealed, .arena-diff, .arena-heat")
LONG_NAME = "librivox-austen-pride-and-prejudice-chapter-one-read-by-a-volunteer-for-the-public-domain-0870.wav"


@pytest.fixture(scope="module")
def chromium():
    if not CHROMIUM.is_file():
        pytest.fail("Debian's chromium is missing: run the tests with `make test`")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield b
        b.close()


def panel(page):
    return page.get_by_role("tabpanel")  # only the open tab's panel is visible


def open_tab(page, name: str) -> None:
    page.get_by_role("tab", name=name).click()
    panel(page).wait_for()


def fill_tabs(page, clips, folder: Path) -> None:
    """A result in every tab, as a user gets one (real models on real LibriVox speech)."""
    clip = clips[0]
    open_tab(page, "Transcribe")
    panel(page).locator("input[type=file]").first.set_input_files(str(clip.path))
    page.wait_for_timeout(500)
    panel(page).get_by_role("button", name="Transcribe", exact=True).click()
    panel(page).locator(".metric-cards").wait_for(timeout=120_000)

    open_tab(page, "Compare")
    panel(page).locator("input[type=file]").first.set_input_files(str(clip.path))
    panel(page).get_by_label("Reference text (optional)").fill(clip.reference)
    panel(page).get_by_label("Reference text (optional)").blur()
    page.wait_for_timeout(1000)
    panel(page).get_by_role("button", name="Compare", exact=True).click()
    page.wait_for_function("() => document.querySelectorAll('.alignment .align-model').length >= 2", timeout=180_000)
    panel(page).locator(".metric-cards").nth(1).wait_for(timeout=60_000)

    dataset = folder / "dataset"
    dataset.mkdir()
    for c in clips[:2]:
        shutil.copy(c.path, dataset / c.path.name)
        (dataset / c.path.with_suffix(".txt").name).write_text(c.reference)
    open_tab(page, "Evaluate")
    panel(page).locator("input[type=file]").first.set_input_files(sorted(str(p) for p in dataset.iterdir()))
    page.wait_for_timeout(1000)
    panel(page).get_by_role("button", name="Evaluate", exact=True).click()
    panel(page).get_by_text(re.compile(r"^Done: ")).wait_for(timeout=240_000)

    files = folder / "batch"
    files.mkdir()
    shutil.copy(clips[0].path, files / LONG_NAME)
    shutil.copy(clips[1].path, files / clips[1].path.name)
    (files / "notes-not-audio.wav").write_text("these are notes, not audio")
    open_tab(page, "Batch")
    panel(page).locator("input[type=file]").first.set_input_files(sorted(str(p) for p in files.iterdir()))
    page.wait_for_timeout(1000)
    panel(page).get_by_role("button", name="Submit batch").click()
    page.wait_for_function("() => /3 \\/ 3 finished/.test(document.body.innerText)", timeout=240_000)

    open_tab(page, "Browser")
    component = panel(page).locator(".basr").first
    component.locator(".basr-model").select_option(TINY_FP32)
    component.locator(".basr-file").set_input_files(str(clip.path))
    page.wait_for_function(
        "(e) => /^(done|error)/.test(e.textContent)", arg=component.locator(".basr-status").element_handle(), timeout=180_000
    )

    open_tab(page, "Arena")  # a battle, a vote, the reveal, and the leaderboard it updates
    panel(page).get_by_role("button", name="A sample clip").click()
    # The clip is in the Audio component once its player shows the duration (m:ss).
    page.wait_for_function("() => /\\d:\\d\\d/.test(document.querySelector('#arena-audio')?.innerText || '')", timeout=30_000)
    panel(page).get_by_role("button", name="Battle", exact=True).click()
    page.wait_for_function(
        "() => ['#arena-a textarea', '#arena-b textarea'].every(s => document.querySelector(s)?.value.length > 0)",
        timeout=180_000,
    )
    page.locator("#arena-vote-a").click()
    page.locator("#arena-revealed").wait_for(timeout=60_000)
    open_tab(page, "Transcribe")


def set_theme(page, theme: str) -> None:
    """What Gradio does for ?__theme=dark (checked in dark_class): the class `dark` on the body."""
    page.evaluate("(dark) => document.body.classList.toggle('dark', dark)", theme == "dark")
    page.wait_for_timeout(200)


def audit(page, axe) -> list[dict]:
    """Axe's violations on the page, each node marked own (inside the project's markup) or not."""
    results = axe.run(page, options={"resultTypes": ["violations"]}).response["violations"]
    found = []
    for v in results:
        targets = [n["target"][0] if isinstance(n["target"][0], str) else n["target"][0][0] for n in v["nodes"]]
        own = page.evaluate(
            "([targets, own]) => targets.map((t) => { const e = document.querySelector(t); return !!(e && e.closest(own)); })",
            [targets, OWN],
        )
        for node, target, is_own in zip(v["nodes"], targets, own):
            found.append({"rule": v["id"], "impact": v["impact"], "help": v["help"], "target": target,
                          "html": node["html"][:300], "own": is_own})  # fmt: skip
    return found


def shoot_and_audit(page, name_of, tabs, axe) -> dict:
    """Each tab at each width, light and dark: a picture, then axe. {(tab, width, theme): violations}."""
    SCREENS.mkdir(parents=True, exist_ok=True)
    out = {}
    for theme in THEMES:
        set_theme(page, theme)
        for tab in tabs:
            page.set_viewport_size(dict(zip(("width", "height"), WIDTHS["desktop"])))
            if tab:
                open_tab(page, tab)
            for width, (w, h) in WIDTHS.items():
                page.set_viewport_size({"width": w, "height": h})
                page.wait_for_timeout(300)
                page.screenshot(path=str(SCREENS / f"{name_of(tab)}-{width}-{theme}.png"), full_page=True)
                out[(tab, width, theme)] = audit(page, axe) if axe else []
    return out


@pytest.fixture(scope="module")
def app_audit(chromium, app, clips, tmp_path_factory):
    """The app with a result in every tab, pictured and audited: {(tab, width, theme): violations}."""
    from axe_playwright_python.sync_playwright import Axe

    context = chromium.new_context(viewport=dict(zip(("width", "height"), WIDTHS["desktop"])))
    page = context.new_page()
    page.goto(app.url)
    try:
        fill_tabs(page, clips, tmp_path_factory.mktemp("ui"))
    except Exception:
        SCREENS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENS / "failed-to-fill.png"), full_page=True)
        raise
    found = shoot_and_audit(page, lambda tab: tab.lower(), TABS, Axe())
    yield found, page
    context.close()


def bare_gradio() -> gr.Blocks:
    """The components the tabs use, as Gradio renders them with nothing of the project's."""
    import pandas as pd

    sample = str(ROOT / "explorer" / "samples" / "librivox-austen-0870.wav")
    # An empty cell too (a job's "error" column, mostly empty, in the app): Gradio renders each cell as a button.
    frame = pd.DataFrame({"model": ["a", "b"], "wer": [0.1, 0.2], "rtfx": [10.0, 20.0], "error": ["", "failed"]})
    with gr.Blocks() as demo:
        gr.Markdown("# Title\nSome text.")
        with gr.Tabs():  # six tabs named as the app's: at phone width Gradio folds them the same way
            with gr.Tab(TABS[0]):
                with gr.Row():
                    with gr.Column():
                        gr.Dropdown(["a", "b"], value=["a"], multiselect=True, label="Models")
                        gr.Dropdown(["a", "b"], value="a", label="Model", allow_custom_value=True)
                        audio = gr.Audio(sources=["upload", "microphone"], type="filepath", label="Audio")
                        gr.Textbox(label="Text", lines=2)
                        gr.Radio(["x", "y"], value="x", label="Task")
                        gr.Slider(1, 10, value=1, step=1, label="Beam size")
                        gr.Checkbox(True, label="Tick")
                        gr.Number(0, label="N")
                        gr.Button("Go", variant="primary")
                        gr.Button("Stop", variant="stop")
                        gr.Examples([[sample]], inputs=[audio], label="Examples")
                    with gr.Column():
                        gr.Textbox("a transcript", label="Transcript", interactive=False, lines=3)
                        gr.HTML("<p>html</p>")
                        gr.Dataframe(frame, label="Table", interactive=False, wrap=True)
                        gr.ScatterPlot(frame, x="rtfx", y="wer", color="model", label="Plot")
                        gr.File([sample], label="Files", file_count="multiple", interactive=False)
                        gr.File(label="Upload", file_count="multiple")
                        with gr.Accordion("JSON", open=False):
                            gr.JSON({"a": 1})
                        with gr.Accordion("Open", open=True):
                            gr.Audio(sample, label="Player", interactive=False)
            for name in TABS[1:]:
                with gr.Tab(name):
                    gr.Markdown(name)
    return demo


@pytest.fixture(scope="module")
def gradio_audit(chromium):
    """The bare Gradio page, audited as the app is: the rules Gradio's own components break."""
    from axe_playwright_python.sync_playwright import Axe

    demo = bare_gradio()
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    context = chromium.new_context()
    try:
        page = context.new_page()
        page.goto(f"http://127.0.0.1:{port}/")
        page.get_by_role("tab", name=TABS[0]).wait_for()
        page.wait_for_timeout(1000)
        yield shoot_and_audit(page, lambda _: "bare-gradio", [None], Axe())
    finally:
        context.close()
        demo.close()


def test_every_tab_is_pictured_at_both_widths_in_both_themes(app_audit):
    for tab in TABS:
        for width in WIDTHS:
            for theme in THEMES:
                path = SCREENS / f"{tab.lower()}-{width}-{theme}.png"
                assert path.is_file() and path.stat().st_size > 10_000, path


def test_dark_mode_is_what_the_theme_parameter_sets(chromium, app):
    """The pictures' dark mode (the class set_theme toggles) is the one ?__theme=dark gives."""
    context = chromium.new_context()
    try:
        page = context.new_page()
        page.goto(app.url + "?__theme=dark")
        page.get_by_role("tab", name="Models").wait_for()
        assert page.evaluate("() => document.body.classList.contains('dark')")
        page.goto(app.url + "?__theme=light")
        page.get_by_role("tab", name="Models").wait_for()
        assert not page.evaluate("() => document.body.classList.contains('dark')")
    finally:
        context.close()


def test_no_serious_violation_on_the_projects_own_markup(app_audit, gradio_audit):
    found, _ = app_audit
    gradio_rules = {v["rule"] for views in gradio_audit.values() for v in views}
    own = [(k, v) for k, views in found.items() for v in views if v["own"] and v["impact"] in SERIOUS]
    # A serious rule that the bare Gradio page never breaks is the project's doing, wherever it is.
    new = [(k, v) for k, views in found.items() for v in views if not v["own"] and v["impact"] in SERIOUS
           and v["rule"] not in gradio_rules]  # fmt: skip
    report = {
        "gradio": gr.__version__,
        "gradio_rules": sorted(gradio_rules),
        "app": {"/".join(map(str, k)): views for k, views in found.items()},
        "bare_gradio": {"/".join(map(str, k)): views for k, views in gradio_audit.items()},
    }
    (SCREENS.parent / "axe.json").write_text(json.dumps(report, indent=1))
    assert not own, json.dumps(own, indent=1)[:4000]
    assert not new, json.dumps(new, indent=1)[:4000]


def test_gradios_own_violations_are_listed_in_the_readme(app_audit, gradio_audit):
    """Each rule the app breaks only where the bare Gradio page breaks it too is in the README's
    table for this Gradio version: listed, not silenced."""
    found, _ = app_audit
    gradio_rules = {v["rule"] for views in gradio_audit.values() for v in views}
    shared = {v["rule"] for views in found.values() for v in views if not v["own"] and v["rule"] in gradio_rules}
    readme = (ROOT / "README.md").read_text()
    section = readme.split("### Accessibility", 1)[-1].split("\n## ", 1)[0]
    assert f"Gradio {gr.__version__}" in section
    missing = [rule for rule in sorted(shared) if f"`{rule}`" not in section]
    assert not missing, f"Gradio's own violations not listed in README.md: {missing}"


def focused(page) -> str:
    return page.evaluate("() => { const e = document.activeElement; return e ? (e.className || '') + ' ' + e.tagName : ''; }")


def tab_until(page, wanted: str, presses: int = 80) -> bool:
    """Press Tab until the focused element matches the CSS selector `wanted`."""
    for _ in range(presses):
        page.keyboard.press("Tab")
        if page.evaluate("(sel) => !!document.activeElement && document.activeElement.matches(sel)", wanted):
            return True
    return False


def test_the_projects_own_controls_work_by_keyboard(app_audit):
    _, page = app_audit
    page.set_viewport_size(dict(zip(("width", "height"), WIDTHS["desktop"])))
    set_theme(page, "light")
    # Compare's sample clips: reachable by Tab, and named (native buttons: Enter and Space press them).
    open_tab(page, "Compare")
    page.get_by_role("tab", name="Compare").focus()
    assert tab_until(page, "#compare-samples button"), focused(page)
    name = page.evaluate("() => document.activeElement.getAttribute('aria-label') || document.activeElement.innerText")
    assert "0870" in name or "0890" in name, name
    # The browser component: every control reachable in order, then used with keys alone.
    open_tab(page, "Browser")
    page.get_by_role("tab", name="Browser").focus()
    for control in ("model", "device", "load", "file", "mic"):
        assert tab_until(page, f"[role=tabpanel] .basr-{control}", 40), f"{control}: focus stayed on {focused(page)}"
    component = panel(page).locator(".basr").first
    component.locator(".basr-model").focus()
    before = component.locator(".basr-model").input_value()
    page.keyboard.press("ArrowDown")  # another model than the one loaded, so Load has work to do
    assert component.locator(".basr-model").input_value() != before
    component.locator(".basr-load").focus()
    page.keyboard.press("Enter")
    page.wait_for_function(
        "(e) => /^(loading|Whisper)/.test(e.textContent)", arg=component.locator(".basr-status").element_handle(), timeout=60_000
    )


def test_batch_results_read_in_place_and_a_row_click_opens_its_job(app_audit):
    _, page = app_audit
    page.set_viewport_size(dict(zip(("width", "height"), WIDTHS["desktop"])))
    open_tab(page, "Batch")
    summary = panel(page).locator(".batch-summary").inner_text()
    assert "3 files" in summary and "1 failed (notes-not-audio.wav: " in summary and "RTFx " in summary, summary
    table = panel(page).locator("[role=grid]").first
    shown = table.inner_text()
    assert LONG_NAME not in shown and LONG_NAME[:15] in shown and "…" in shown, shown  # the long name is shortened
    # A transcript preview (Gradio keeps hidden copies of cells for measuring: the visible one).
    first_words = table.get_by_text(re.compile(r"^(and|Mr|Mister|The|It|He) ", re.I)).filter(visible=True).first
    first_words.click()
    page.wait_for_function(
        "() => [...document.querySelectorAll('[role=tabpanel] textarea')].some((t) => t.value.split(' ').length > 5)",
        timeout=30_000,
    )
