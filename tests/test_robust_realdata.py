"""Real SciFact through the checked loader: BEIR's counts, the tolerated
irregularities in the record, and the published score."""

from __future__ import annotations

import pytest

from eval.results import main_score


@pytest.mark.realdata
def test_scifact_data_warnings(real_records: dict) -> None:
    record = real_records["SciFact"].record

    warnings = record["harness"]["task"]["data_warnings"]["SciFact"]

    # queries.jsonl contains the 1,109 train and test claims, and 300 of them are judged in test.
    assert warnings["queries_without_qrels"] == 809
    assert warnings["qrels_unknown_documents"] == 0
    assert warnings["qrels_unknown_queries"] == 0
    assert warnings["duplicate_judgements"] == 0
    assert warnings["empty_documents"] == 0
    assert main_score(record) == pytest.approx(0.64508, abs=1e-5)


@pytest.mark.realdata
def test_real_records_report_cache(real_records: dict) -> None:
    for name, outcome in real_records.items():
        cache = outcome.record["harness"]["encoding"]["cache"]

        assert cache["chunks_reused"] + cache["chunks_encoded"] >= 1, name
        assert cache["chunk_size"] % outcome.record["harness"]["model"]["batch_size"] == 0, name
        assert outcome.record["harness"]["encoding"]["out_of_memory_retries"] == 0, name
