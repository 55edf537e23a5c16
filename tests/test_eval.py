"""The evaluation harness: metrics on hand-made answers, `python -m eval` end to end with the fake embedder,
and a quality gate on the seed test split with the real model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.embedding import HashEmbedder
from app.qa import QA
from app.records import Answer, Citation
from app.settings import Settings
from eval.__main__ import SEED_QUESTIONS, main
from eval.metrics import (
    Result, choose_threshold, contains_gold, declined, failures, score, sweep, thresholds,
)
from eval.questions import Question, QuestionFileError, as_keywords, keyword_query, load_questions, select
from eval.runner import ask_all

# The regression gate on the seed test split (real model, the readout's own questions), in one place. Measured
# when set (scoring.json fitted on the seed, squad2, covid_qa, wh_readouts and squad_absent dev splits, reader
# abstain_below 0.16, chosen for at most 5% false abstention in every dev set; reader
# verbatim-reader-minilm-l4-s1200+200+600+3000+6000+4000 reading 2 candidates beside the stage-14 passage reader;
# questions through the query tower verbatim-query-minilm-top3-s900): hit@1 89.6% (60/67), abstention recall
# 36.4% (8/22), false abstention 4.5% (3/67), exact-answer token F1 0.643, verbatim 100%. Floors sit a
# question or more below; retune them here when the system is retuned on purpose.
SEED_TEST_FLOORS = {"hit1": 0.82, "abstention_recall": 0.20, "false_abstention_max": 0.08, "span_f1": 0.50,
                    "verbatim": 1.0}


# --- metrics on hand-made answers ------------------------------------------------------------------------

def result(qid: str, quotes: list[str], gold: list[str] = (), abstained: bool = False, confidence: float = 0.5,
           unanswerable: bool = False, history: tuple[str, ...] = (), split: str = "dev", latency_ms: float = 10.0,
           verbatim: int | None = None) -> Result:
    citations = tuple(Citation(i + 1, q, "doc.md", "Doc", None, 0, len(q), 0.5) for i, q in enumerate(quotes))
    question = Question(qid, f"question {qid}?", tuple(gold), unanswerable, split, history)
    answer = Answer(question.question, abstained, "…", citations, confidence)
    return Result(question, answer, latency_ms, len(citations) if verbatim is None else verbatim)


def test_gold_match_ignores_case_and_whitespace():
    assert contains_gold("The summit was held in\n  Phnom   Penh, Cambodia.", ["phnom penh"])
    assert not contains_gold("The summit was held in Phnom-Penh.", ["Phnom Penh"])
    assert contains_gold("up to 30 leaders", ["thirty", "UP TO 30"])


def test_hits_rank_and_abstention_on_hand_made_answers():
    results = [
        result("a", ["It was held in PHNOM PENH.", "other"], ["Phnom Penh"]),  # hit at 1
        result("b", ["nothing here", "the Senkaku Islands"], ["Senkaku Islands"]),  # hit at 2
        result("c", ["nothing", "still nothing", "no", "gold only fourth: Jakarta"], ["Jakarta"]),  # hit at 4
        result("d", ["Kishida Fumio said"], ["Kishida Fumio"], abstained=True),  # abstained: a miss
        result("u1", ["some related passage"], unanswerable=True, abstained=True),
        result("u2", ["a confident wrong answer"], unanswerable=True),
    ]
    m = score(results)
    assert (m.questions, m.answerable, m.unanswerable) == (6, 4, 2)
    assert m.hit1 == pytest.approx(1 / 4)
    assert m.hit3 == pytest.approx(2 / 4)
    assert m.hit_at_k == pytest.approx((0.25, 0.5, 0.5, 0.75))
    assert m.mrr == pytest.approx((1 + 1 / 2 + 1 / 4) / 4)
    assert m.abstention_recall == pytest.approx(1 / 2)
    assert m.false_abstention == pytest.approx(1 / 4)
    assert m.followup_hit1 is None  # no conversations in this set


def test_quote_length_counts_first_quotes_of_answered_answerable_questions():
    results = [result("a", ["x" * 100, "y" * 900], ["x"]), result("b", ["x" * 300], ["x"]),
               result("c", ["x" * 5000], ["x"], abstained=True), result("u", ["x" * 7000], unanswerable=True)]
    m = score(results)
    assert m.quote_chars_median == 200
    assert m.quote_chars_p90 == pytest.approx(280)


def test_follow_up_verbatim_and_latency():
    results = [
        result("c1", ["it sponsors up to 30 leaders"], ["up to 30"], history=("What is the Institute?",)),
        result("c2", ["wrong"], ["$10 million"], history=("Tell me about the program.",), verbatim=0),
        result("a", ["plain hit"], ["plain"], latency_ms=30.0),
    ]
    m = score(results)
    assert m.conversations == 2
    assert m.followup_hit1 == pytest.approx(1 / 2)
    assert m.citations == 3 and m.verbatim == pytest.approx(2 / 3)
    assert m.latency_p50_ms == 10.0
    assert m.latency_p95_ms == pytest.approx(28.0)


def test_threshold_replay_and_sweep_choose_on_the_stated_objective():
    answerable = [result(f"a{i}", ["gold"], ["gold"], confidence=c) for i, c in enumerate([0.3, 0.5, 0.6, 0.7])]
    unanswerable = [result(f"u{i}", ["x"], unanswerable=True, confidence=c) for i, c in enumerate([0.1, 0.2, 0.4])]
    nothing = result("n", [], ["gold"], abstained=True, confidence=0.9)  # no citation: declined at any threshold
    results = answerable + unanswerable + [nothing]
    assert declined(nothing, -1e9) and not declined(answerable[0], 0.3) and declined(answerable[0], 0.31)
    at_035 = score(results, 0.35)
    assert at_035.hit1 == pytest.approx(3 / 5) and at_035.false_abstention == pytest.approx(2 / 5)
    assert at_035.abstention_recall == pytest.approx(2 / 3)

    grid = thresholds(results, include=[0.42])
    assert grid[0] <= 0.1 and grid[-1] > 0.7 and 0.42 in grid
    rows = {row.threshold: row for row in sweep(results, grid)}
    assert rows[0.25].unanswerable_declined == pytest.approx(2 / 3)
    assert rows[0.25].wrongly_declined == pytest.approx(1 / 5)  # only the answer without a citation
    # With at most 20% of answerable questions declined, the best recall (2/3) is reached from 0.21 up to
    # 0.30; the lowest such threshold is chosen. With 40% allowed, 0.41 declines all three unanswerable.
    assert choose_threshold(list(rows.values()), 0.20) == pytest.approx(0.21)
    assert choose_threshold(list(rows.values()), 0.40) == pytest.approx(0.41)
    assert choose_threshold(list(sweep(answerable, grid)), 0.2) is None  # nothing unanswerable to decline


def test_failures_say_what_went_wrong():
    results = [
        result("ok", ["Phnom Penh"], ["Phnom Penh"]),
        result("wrong", ["Vientiane", "Phnom Penh"], ["Phnom Penh"]),
        result("shy", ["Phnom Penh"], ["Phnom Penh"], abstained=True),
        result("bold", ["an answer"], unanswerable=True),
        result("quiet", ["related"], unanswerable=True, abstained=True),
    ]
    found = {f["id"]: f for f in failures(results)}
    assert set(found) == {"wrong", "shy", "bold"}
    assert found["wrong"]["outcome"] == "wrong first quote (gold in quote 2)"
    assert found["wrong"]["quote"] == "Vientiane" and found["wrong"]["gold"] == ["Phnom Penh"]
    assert found["shy"]["outcome"].startswith("abstained")
    assert found["bold"]["outcome"] == "answered an unanswerable question"


# --- question files --------------------------------------------------------------------------------------

def write_lines(path: Path, rows: list) -> Path:
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    return path


def test_question_file_with_a_conversation_and_splits(tmp_path):
    path = write_lines(tmp_path / "q.jsonl", [
        {"id": "1", "question": "Where?", "answers": ["Jakarta"], "unanswerable": False, "split": "dev"},
        {"id": "2", "turns": ["What is the Institute?", "How many will it sponsor?"], "answers": ["up to 30"],
         "split": "test"},
        {"id": "3", "question": "Who is Canada's leader?", "answers": [], "unanswerable": True, "split": "test"},
    ])
    questions = load_questions(path)
    assert questions[1].question == "How many will it sponsor?"
    assert questions[1].history == ("What is the Institute?",) and questions[1].is_conversation
    assert [q.id for q in select(questions, "test")] == ["2", "3"]
    assert [q.id for q in select(questions, "all", limit=2)] == ["1", "2"]


@pytest.mark.parametrize("question, query", [
    ("From what countries did the Norse originate?", "countries norse originate"),
    ("What is Beyonce's middle name?", "beyonce middle name"),  # "name" is what the query is about
    ("What was the U.S. GDP in 1990?", "us gdp 1990"),
    ("How many people live in Hong-Kong?", "many people live hong-kong"),
    ("Who is he?", "Who is he?"),  # nothing but function words: kept as asked
])
def test_a_keyword_query_is_what_a_user_types_into_a_search_box(question, query):
    assert keyword_query(question) == query


def test_as_keywords_turns_single_questions_into_queries_and_leaves_conversations_as_written(tmp_path):
    questions = load_questions(write_lines(tmp_path / "q.jsonl", [
        {"id": "1", "question": "Who chaired the summit?", "answers": ["Anwar"], "split": "dev"},
        {"id": "2", "turns": ["What is the Institute?", "How many will it sponsor?"], "answers": ["up to 30"]},
    ]))
    single, conversation = as_keywords(questions)
    assert single.question == "chaired summit" and single.answers == ("Anwar",) and single.split == "dev"
    assert conversation == questions[1]


@pytest.mark.parametrize("line, message", [
    ('{"id": "1", "question": "Where?"}', "line 2: an answerable question needs"),
    ('{"id": "1", "question": "Where?", "answers": ["x"], "split": "train"}', 'line 2: "split" must be'),
    ('{"id": "1", "turns": [], "answers": ["x"]}', 'line 2: "turns" must be'),
    ("not json", "line 2"),
    ('{"id": "0", "question": "Again?", "answers": ["x"]}', "line 2: duplicate id '0'"),
])
def test_a_bad_question_line_is_named(tmp_path, line, message):
    path = write_lines(tmp_path / "q.jsonl", ['{"id": "0", "question": "Fine?", "answers": ["x"]}', line])
    with pytest.raises(QuestionFileError, match=message.replace("(", r"\(")):
        load_questions(path)


# --- end to end with the fake embedder -------------------------------------------------------------------

HARBOUR = """# Harbour notes

## The lighthouse

The lighthouse on Gull Island was built in 1874 by the harbour board. Its lamp burned whale oil until 1911,
when a kerosene burner replaced it.

The keeper's cottage stands forty metres north of the tower. Visitors may climb the 112 steps to the gallery.

## The ferry

The ferry to Gull Island leaves the north pier at nine every morning. It carries forty passengers and two cars.
"""
GARDEN = """# Garden guide

Tomatoes need six hours of sun a day. Water them at the root, never on the leaves.

Basil grows well beside tomatoes and keeps whitefly away.
"""
QUESTIONS = [
    {"id": "built", "question": "When was the lighthouse on Gull Island built?", "answers": ["1874"], "split": "dev"},
    {"id": "sun", "question": "How many hours of sun do tomatoes need?", "answers": ["six hours"], "split": "test"},
    {"id": "ferry", "turns": ["When does the ferry to Gull Island leave?", "How many passengers does it carry?"],
     "answers": ["forty passengers"], "split": "test"},
    {"id": "moon", "question": "Who was the first person to walk on the Moon?", "answers": [], "unanswerable": True,
     "split": "dev"},
]


@pytest.fixture
def tiny_set(tmp_path) -> tuple[Path, Path]:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "harbour.md").write_text(HARBOUR, encoding="utf-8")
    (corpus / "garden.md").write_text(GARDEN, encoding="utf-8")
    return corpus, write_lines(tmp_path / "questions.jsonl", QUESTIONS)


def test_eval_end_to_end_writes_results_report_and_plots(tiny_set, tmp_path, capsys):
    corpus, questions = tiny_set
    index, results_path, report_dir = tmp_path / "index", tmp_path / "out" / "results.jsonl", tmp_path / "report"
    code = main(["--questions", str(questions), "--corpus", str(corpus), "--index", str(index),
                 "--results", str(results_path), "--report", str(report_dir), "--sweep", "--compare"],
                embedder=HashEmbedder())
    out = capsys.readouterr().out
    assert code == 0
    assert "hit@1" in out and "abstention recall" in out and "dense only" in out

    lines = [json.loads(line) for line in results_path.read_text(encoding="utf-8").splitlines()]
    assert [line["id"] for line in lines] == [q["id"] for q in QUESTIONS]
    for line in lines:
        assert {"question", "abstained", "answer", "citations", "latency_ms"} <= set(line)
        for c in line["citations"]:  # the contract's invariant, read straight from the file
            assert (corpus / c["doc"]).read_text(encoding="utf-8")[c["start"]:c["end"]] == c["quote"]

    report = json.loads((report_dir / "report.json").read_text(encoding="utf-8"))
    assert set(report["groups"]) == {"dev", "test", "all"}
    everything = report["groups"]["all"]
    assert everything["verbatim"] == 1.0 and everything["questions"] == 4 and everything["conversations"] == 1
    golds = {q["id"]: q["answers"] for q in QUESTIONS}
    hits = [not line["abstained"] and bool(line["citations"]) and any(
        g.lower() in " ".join(line["citations"][0]["quote"].split()).lower() for g in golds[line["id"]])
        for line in lines if golds[line["id"]]]
    assert everything["hit1"] == pytest.approx(sum(hits) / 3)  # the report agrees with the results file
    assert {r["configuration"] for r in report["compare"]} == {
        "full system", "no reader (fitted sentence scorer)", "dense only", "lexical only",
        "fixed 1,000-char chunks, whole"}
    assert (tmp_path / "index-fixed1000" / "current").exists()  # the fixed-chunk baseline's own index
    assert len(report["failures"]) == 3 - sum(hits) + (0 if lines[3]["abstained"] else 1)
    markdown = (report_dir / "report.md").read_text(encoding="utf-8")
    assert "## Failures" in markdown and "![abstention trade-off](abstention.png)" in markdown
    for png in ("abstention.png", "hit_at_k.png"):
        assert (report_dir / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_replayed_abstention_matches_the_system_at_that_threshold(tiny_set, tmp_path):
    """The sweep prices thresholds from one run; the system run at a threshold must decline the same."""
    corpus, questions_path = tiny_set
    questions = load_questions(questions_path)
    base = Settings(corpus=corpus, index=tmp_path / "index")
    embedder = HashEmbedder()
    QA(base, embedder).build()
    never = ask_all(QA(base.with_answer(abstain_below=-1e9), embedder), questions)
    threshold = sorted(r.answer.confidence for r in never)[len(never) // 2]
    real = ask_all(QA(base.with_answer(abstain_below=threshold), embedder), questions)
    assert [declined(r, threshold) for r in never] == [r.answer.abstained for r in real]
    assert any(r.answer.abstained for r in real) and not all(r.answer.abstained for r in real)
    assert [r.answer.citations[0].quote for r in never] == [r.answer.citations[0].quote for r in real]


def test_eval_as_keywords_asks_the_keyword_queries(tiny_set, tmp_path):
    corpus, questions = tiny_set
    results_path, report_dir = tmp_path / "results.jsonl", tmp_path / "report"
    assert main(["--questions", str(questions), "--corpus", str(corpus), "--index", str(tmp_path / "index"),
                 "--as-keywords", "--results", str(results_path), "--report", str(report_dir)],
                embedder=HashEmbedder()) == 0
    asked = [json.loads(line)["question"] for line in results_path.read_text(encoding="utf-8").splitlines()]
    assert asked == [q["turns"][-1] if "turns" in q else keyword_query(q["question"]) for q in QUESTIONS]
    assert json.loads((report_dir / "report.json").read_text(encoding="utf-8"))["as_keywords"] is True


@pytest.mark.parametrize("argv, message", [
    (["--questions", "no-such-file.jsonl"], "cannot read question file"),
    (["--dataset", "no_such_set"], "no dataset 'no_such_set'"),
])
def test_errors_are_one_line_not_a_traceback(argv, message, capsys):
    assert main(argv, embedder=HashEmbedder()) == 1
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_an_unwritable_report_is_one_line(tiny_set, tmp_path, capsys):
    corpus, questions = tiny_set
    (tmp_path / "a-file").write_text("not a folder", encoding="utf-8")
    code = main(["--questions", str(questions), "--corpus", str(corpus), "--index", str(tmp_path / "index"),
                 "--report", str(tmp_path / "a-file" / "report")], embedder=HashEmbedder())
    err = capsys.readouterr().err
    assert code == 1 and "eval: cannot write" in err and "Traceback" not in err


# --- the quality gate (real model) -----------------------------------------------------------------------

@pytest.mark.slow
def test_seed_test_split_stays_above_the_floors(seed_qa):
    results = ask_all(seed_qa, select(load_questions(SEED_QUESTIONS), "test"))
    m = score(results)
    print(f"\nseed test split: hit@1 {m.hit1:.1%}, abstention recall {m.abstention_recall:.1%}, "
          f"false abstention {m.false_abstention:.1%}, exact-answer F1 {m.span_f1:.3f}, "
          f"verbatim {m.verbatim:.1%} of {m.citations}; "
          f"floors {SEED_TEST_FLOORS}")
    assert m.verbatim == SEED_TEST_FLOORS["verbatim"]
    assert m.hit1 >= SEED_TEST_FLOORS["hit1"]
    assert m.abstention_recall >= SEED_TEST_FLOORS["abstention_recall"]
    assert m.false_abstention <= SEED_TEST_FLOORS["false_abstention_max"]
    assert m.span_f1 >= SEED_TEST_FLOORS["span_f1"]


def test_the_absent_articles_set_asks_about_indexed_articles_and_about_articles_that_are_not_there():
    folder = Path(__file__).resolve().parent.parent / "eval" / "datasets" / "squad_absent"
    rows = [json.loads(line) for line in (folder / "questions.jsonl").read_text(encoding="utf-8").splitlines()]
    corpus = {path.name: path.read_text(encoding="utf-8") for path in (folder / "corpus").iterdir()}
    titles = {text.split("\n", 1)[0] for text in corpus.values()}
    for row in rows:
        if row["unanswerable"]:
            assert row["answers"] == [] and "doc" not in row
            assert row["article"].replace("_", " ") not in titles  # absent: not one paragraph of it is indexed
        else:
            assert any(gold in corpus[row["doc"]] for gold in row["answers"])
    split_of = {}
    for row in rows:  # dev and test share no article
        assert split_of.setdefault(row["article"], row["split"]) == row["split"]
    assert {r["split"] for r in rows} == {"dev", "test"} and sum(r["unanswerable"] for r in rows) >= 100
