"""The Gradio page: a "Try a model" tab and a "Results" tab.

Handlers catch errors and show them on the page, because a user of the page
does not see the terminal. The page makes no requests to other hosts:
Gradio's analytics and version check are off and no share link is created.
"""

from __future__ import annotations

import html
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

# With analytics on, Gradio 6 sends usage data to api.gradio.app and fetches the
# newest Gradio version from it. Blocks(analytics_enabled=False) below turns both off too.
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"

import gradio as gr  # noqa: E402
import pandas as pd  # noqa: E402

from eval.checkpoint import CheckpointError  # noqa: E402
from eval.config import ConfigError  # noqa: E402
from eval.webui import DEFAULT_HOST, DEFAULT_PORT, browse, similarity  # noqa: E402

logger = logging.getLogger(__name__)

ALL = "all"
# Invalid record files named in the Results summary; the server log names all of them.
MAX_PROBLEMS_SHOWN = 5

# The temperature and the 0.7 to 1.0 range are from the FAQ of the intfloat/e5-base-v2 model card.
SIMILARITY_NOTE = (
    "Scores are cosine similarities of L2-normalised embeddings. E5 models were trained "
    "with a low temperature (0.01) in the InfoNCE contrastive loss, so their similarities "
    "usually fall between 0.7 and 1.0 even for unrelated texts: the ranking matters more than "
    "the absolute values. Texts longer than the model's max_length tokens are cut."
)


@dataclass
class PageSettings:
    """Folders that the page reads, and the limits on what it encodes."""

    results_dir: Path
    reports_dir: Path
    max_candidates: int = similarity.DEFAULT_MAX_CANDIDATES
    max_chars: int = similarity.DEFAULT_MAX_CHARS
    model_capacity: int = 2


def _status(message: str, *, kind: str) -> str:
    # The status is HTML with the message escaped, so paths and model ids show exactly as written.
    return f'<div class="status status-{kind}">{html.escape(message)}</div>'


MODE_NAMES = {
    similarity.MODEL_RULE: "model's own rule",
    similarity.RETRIEVAL: "retrieval",
    similarity.SYMMETRIC: "symmetric",
    similarity.NO_PREFIX: "none",
}


def mode_choices(model_scheme: Optional[str]) -> list[tuple[str, str]]:
    """Return the prefix selector's (label, mode) pairs; each label shows the prefixes it adds.

    Until a model is loaded (``model_scheme`` None) the model's own rule is unknown.
    """
    choices = []
    for mode in similarity.PREFIX_MODES:
        label = MODE_NAMES[mode]
        if mode == similarity.MODEL_RULE:
            if model_scheme is None:
                choices.append((label, mode))
                continue
            label += f" ({model_scheme})"
        prefix = similarity.prefixes_for_mode(mode, model_scheme or "none")
        choices.append((f"{label}: query {prefix.query!r}, passages {prefix.passage!r}", mode))
    return choices


class TryModelHandlers:
    """Callbacks of the "Try a model" tab, bound to one model store and the page's limits."""

    def __init__(self, store: similarity.ModelStore, settings: PageSettings) -> None:
        self.store = store
        self.settings = settings

    def loading(self, reference: str) -> str:
        return _status(f"Loading {reference.strip() or '(nothing entered)'} …", kind="info")

    def load(self, reference: str) -> tuple[str, Optional[str], Any]:
        """Load the model; return the status line, the reference the session now uses and the prefix selector."""
        reference = reference.strip()
        try:
            encoder = self.store.get(reference)
        except (ConfigError, CheckpointError) as error:
            logger.warning("Could not load %r for the web page: %s", reference, error)
            return self._load_failed(reference, error)
        except Exception as error:  # noqa: BLE001  (any other load failure is shown on the page too)
            logger.exception("Loading %r for the web page failed", reference)
            return self._load_failed(reference, error)

        checkpoint = encoder.checkpoint
        rule = similarity.prefixes_for_mode(similarity.MODEL_RULE, encoder.prefix_scheme)
        message = (
            f"Loaded {checkpoint.model_id} (revision {checkpoint.revision}) on {encoder.device}, "
            f"{encoder.effective_dtype}, max_length {encoder.max_length}. Its prefix rule "
            f"({encoder.prefix_scheme}) gives the query {rule.query!r} and passages {rule.passage!r}."
        )
        return _status(message, kind="ok"), reference, gr.Radio(choices=mode_choices(encoder.prefix_scheme))

    def _load_failed(self, reference: str, error: Exception) -> tuple[str, None, Any]:
        # The session then has no model, so nothing is ranked with a model the user did not ask for.
        status = _status(f"Could not load {reference or 'the model'}: {error}", kind="error")
        return status, None, gr.Radio(choices=mode_choices(None))

    def rank(
        self, reference: Optional[str], query: str, candidates_text: str, mode: str
    ) -> tuple[str, str, pd.DataFrame]:
        """Rank the candidates and return the status line, the encoded query and the table."""
        empty = pd.DataFrame(columns=list(similarity.RANKING_COLUMNS))
        if not reference:
            return _status("Load a model first.", kind="error"), "", empty

        candidates = similarity.parse_candidates(candidates_text)
        try:
            similarity.check_inputs(
                query, candidates, max_candidates=self.settings.max_candidates, max_chars=self.settings.max_chars
            )
        except similarity.InputError as error:
            return _status(f"Nothing was encoded: {error}.", kind="error"), "", empty

        try:
            encoder = self.store.get(reference)
            prefix = similarity.prefixes_for_mode(mode, encoder.prefix_scheme)
            ranking = similarity.rank_candidates(encoder, query, candidates, prefix)
        except Exception as error:  # noqa: BLE001  (any encoding failure is shown on the page)
            logger.exception("Encoding for the web page failed with model %r", reference)
            return _status(f"Encoding failed: {error}", kind="error"), "", empty

        message = f"Ranked {len(candidates)} candidates with {encoder.checkpoint.model_id}, prefix mode {mode}."
        if ranking.truncated:
            message += f" {ranking.truncated} texts reached max_length {encoder.max_length} tokens and were cut."
        return _status(message, kind="ok"), ranking.encoded_query, ranking.table


class ResultsHandlers:
    """Callbacks of the "Results" tab."""

    def __init__(self, settings: PageSettings) -> None:
        self.settings = settings

    def refresh(self) -> tuple[Any, ...]:
        """Re-read the records and the latest report; return every output of the tab."""
        results = browse.load_results_table(self.settings.results_dir)
        table = results.table
        if table.empty:
            summary = f"No records under {self.settings.results_dir} yet. Run python -m eval task=... model=... first."
        else:
            summary = f"{len(table)} records under {self.settings.results_dir}."
        if results.problems:
            shown = results.problems[:MAX_PROBLEMS_SHOWN]
            summary += f" {len(results.problems)} files skipped: " + "; ".join(shown)
            if len(results.problems) > len(shown):
                summary += f"; and {len(results.problems) - len(shown)} more (see the server log)"

        model_choices = [ALL, *sorted(table["model"].unique())]
        task_choices = [ALL, *sorted(table["task"].unique())]
        return (
            table,
            table,
            _status(summary, kind="error" if results.problems else "ok"),
            gr.Dropdown(choices=model_choices, value=ALL),
            gr.Dropdown(choices=task_choices, value=ALL),
            "",
            *self.report_outputs(),
        )

    def filter(self, table: pd.DataFrame, model: str, task: str, text: str) -> pd.DataFrame:
        return browse.filter_results(
            table, model=None if model == ALL else model, task=None if task == ALL else task, text=text or ""
        )

    def report_outputs(self) -> tuple[Any, ...]:
        """Return the report status, Markdown, HTML, table choice, table and the paths of the plots."""
        reports_dir = self.settings.reports_dir
        report = browse.latest_report(reports_dir)
        if report is None:
            return self._report_failed(
                f"No report yet: {reports_dir} contains no Markdown, HTML or CSV report. "
                "Reports written there show up here after Refresh.",
                kind="info",
            )

        table_names = [str(path.relative_to(report.folder)) for path in report.tables]
        try:
            first_table = report.read_table(report.tables[0]) if report.tables else None
            markdown = report.markdown.read_text(encoding="utf-8") if report.markdown else ""
            # The HTML document is shown only where there is no Markdown version.
            # NOTE: its images and links are shown as written, so an HTML report that
            # points at other hosts makes the browser contact them.
            page = report.html.read_text(encoding="utf-8") if report.html and not report.markdown else ""
        except (OSError, ValueError) as error:
            logger.warning("Could not read the report in %s: %s", report.folder, error)
            return self._report_failed(f"Could not read the report in {report.folder}: {error}")

        return (
            _status(f"Latest report: {report.folder}", kind="ok"),
            gr.Markdown(value=browse.replace_images(markdown), visible=bool(markdown)),
            gr.HTML(value=page, visible=bool(page)),
            gr.Dropdown(choices=table_names, value=table_names[0] if table_names else None, visible=bool(table_names)),
            gr.Dataframe(value=first_table, visible=first_table is not None),
            [str(path) for path in report.images],
        )

    def _report_failed(self, message: str, *, kind: str = "error") -> tuple[Any, ...]:
        return (
            _status(message, kind=kind),
            gr.Markdown(value="", visible=False),
            gr.HTML(value="", visible=False),
            gr.Dropdown(choices=[], value=None, visible=False),
            gr.Dataframe(value=None, visible=False),
            [],
        )

    def report_table(self, name: Optional[str]) -> Optional[pd.DataFrame]:
        """Return the report's CSV table ``name``, or None when it is gone or unreadable."""
        report = browse.latest_report(self.settings.reports_dir)
        if report is None or not name:
            return None
        try:
            return report.read_table(report.folder / name)
        except (OSError, ValueError) as error:
            logger.warning("Could not read report table %s in %s: %s", name, report.folder, error)
            return None


CSS = """
.status { padding: 0.5em 0.75em; border-radius: 6px; white-space: pre-wrap; }
.status-ok { background: #ecfdf5; color: #065f46; }
.status-info { background: #eff6ff; color: #1e3a8a; }
.status-error { background: #fef2f2; color: #991b1b; }
"""


def build_app(settings: PageSettings) -> gr.Blocks:
    """Build the page; ``launch`` starts it."""
    with gr.Blocks(title="E5 evaluation harness", analytics_enabled=False) as demo:
        gr.Markdown("# E5 evaluation harness")
        with gr.Tabs():
            with gr.Tab("Try a model", id="try"):
                _build_try_tab(TryModelHandlers(similarity.ModelStore(capacity=settings.model_capacity), settings))
            with gr.Tab("Results", id="results"):
                _build_results_tab(demo, ResultsHandlers(settings))
    return demo


def _build_try_tab(handlers: TryModelHandlers) -> None:
    settings = handlers.settings
    model_names = similarity.page_model_names()

    with gr.Row():
        model_reference = gr.Textbox(
            label="Model config name or checkpoint folder",
            placeholder=f"{model_names[0]}, or /path/to/checkpoint",
            info=f"Config names: {', '.join(model_names)}. A folder needs config.json, tokenizer files and weights.",
            elem_id="model-reference",
            scale=4,
        )
        load_button = gr.Button("Load model", variant="secondary", elem_id="load-button", scale=1)
    load_status = gr.HTML(_status("No model loaded.", kind="info"), elem_id="load-status")
    loaded_reference = gr.State(None)

    query = gr.Textbox(label="Query", lines=2, elem_id="query")
    candidates = gr.Textbox(
        label=f"Candidate passages, one per line (at most {settings.max_candidates}, "
        f"{settings.max_chars} characters each)",
        lines=6,
        elem_id="candidates",
    )
    mode = gr.Radio(
        choices=mode_choices(None),
        value=similarity.MODEL_RULE,
        label="Prefixes",
        info="The model's own rule is its config's prefix scheme applied to a query and passages.",
        elem_id="prefix-mode",
    )
    rank_button = gr.Button("Rank candidates", variant="primary", elem_id="rank-button")
    rank_status = gr.HTML("", elem_id="rank-status")
    encoded_query = gr.Textbox(label="Encoded query", interactive=False, elem_id="encoded-query")
    ranking = gr.Dataframe(
        value=pd.DataFrame(columns=list(similarity.RANKING_COLUMNS)),
        label="Candidates ranked by cosine similarity",
        interactive=False,
        wrap=True,
        column_widths=["7%", "13%", "40%", "40%"],
        elem_id="ranking",
    )
    gr.Markdown(SIMILARITY_NOTE, elem_id="similarity-note")

    gr.on(
        triggers=[load_button.click, model_reference.submit],
        fn=handlers.loading,
        inputs=model_reference,
        outputs=load_status,
        queue=False,
    ).then(handlers.load, inputs=model_reference, outputs=[load_status, loaded_reference, mode])
    rank_button.click(
        handlers.rank,
        inputs=[loaded_reference, query, candidates, mode],
        outputs=[rank_status, encoded_query, ranking],
    )


def _build_results_tab(demo: gr.Blocks, handlers: ResultsHandlers) -> None:
    results_summary = gr.HTML("", elem_id="results-summary")
    with gr.Row():
        model_filter = gr.Dropdown(choices=[ALL], value=ALL, label="Model", elem_id="model-filter")
        task_filter = gr.Dropdown(choices=[ALL], value=ALL, label="Task", elem_id="task-filter")
        text_filter = gr.Textbox(label="Contains", placeholder="any text, e.g. cuda or float16")
        refresh_button = gr.Button("Refresh", elem_id="refresh-button")
    all_results = gr.State(pd.DataFrame(columns=list(browse.RESULT_COLUMNS)))
    results_table = gr.Dataframe(
        value=pd.DataFrame(columns=list(browse.RESULT_COLUMNS)),
        label="Results records",
        interactive=False,
        wrap=True,
        elem_id="results-table",
    )

    gr.Markdown("## Latest report")
    report_status = gr.HTML("", elem_id="report-status")
    report_markdown = gr.Markdown(visible=False, elem_id="report-markdown")
    report_html = gr.HTML(visible=False, elem_id="report-html")
    report_table_name = gr.Dropdown(choices=[], label="Report CSV file", visible=False)
    report_table = gr.Dataframe(label="Report table", interactive=False, visible=False, elem_id="report-table")
    report_images = gr.State([])

    # One image per plot, at its own aspect ratio, because the number of plots is known only
    # at run time. The "share" button is left out: it posts to Hugging Face Spaces.
    @gr.render(inputs=report_images)
    def show_plots(paths: list[str]) -> None:
        with gr.Row(elem_id="report-plots"):
            for path in paths:
                gr.Image(
                    path,
                    label=Path(path).name,
                    interactive=False,
                    buttons=["download", "fullscreen"],
                    min_width=320,
                )

    refresh_outputs = [
        all_results,
        results_table,
        results_summary,
        model_filter,
        task_filter,
        text_filter,
        report_status,
        report_markdown,
        report_html,
        report_table_name,
        report_table,
        report_images,
    ]
    refresh_button.click(handlers.refresh, outputs=refresh_outputs)
    demo.load(handlers.refresh, outputs=refresh_outputs)
    for control in (model_filter, task_filter, text_filter):
        control.change(
            handlers.filter,
            inputs=[all_results, model_filter, task_filter, text_filter],
            outputs=results_table,
        )
    report_table_name.change(handlers.report_table, inputs=report_table_name, outputs=report_table)


def launch(settings: PageSettings, *, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT) -> None:
    """Serve the page on ``host:port`` until interrupted; it never creates a public share link."""
    demo = build_app(settings)
    logger.info("Serving the page on http://%s:%d (results %s, reports %s)", host, port, settings.results_dir, settings.reports_dir)
    demo.launch(
        server_name=host,
        server_port=port,
        share=False,
        show_error=True,
        ssr_mode=False,
        allowed_paths=[str(settings.reports_dir)],
        css=CSS,
    )
