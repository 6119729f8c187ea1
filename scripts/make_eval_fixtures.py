#!/usr/bin/env python3
"""Writes tests/fixtures/eval/: a few hand-made rows of each evaluation dataset, in the forms
people have them — the Hugging Face hub's Parquet files (the hub's exact column names and
types, written by pyarrow with snappy compression, as the hub writes them), JSONL rows with the
same fields, and the raw text files (`wiki.test.raw`, `ptb.test.txt`).

    python3 -m pip install pyarrow
    python3 scripts/make_eval_fixtures.py

Schemas (column: type), as `datasets` stores them on the hub:

* wikitext `wikitext-2-raw-v1/test-00000-of-00001.parquet`: text: string (one row per line of
  `wiki.test.raw`, the line's "\\n" kept; blank lines are "").
* ptb_text_only `penn_treebank/test-00000-of-00001.parquet`: sentence: string (one row per line of
  `ptb.test.txt`, stripped).
* google/boolq: question: string, answer: bool, passage: string.
* super_glue boolq: question: string, passage: string, idx: int32, label: int64 (0 = False).
* piqa: goal: string, sol1: string, sol2: string, label: int64.
* Rowan/hellaswag: ind: int32, activity_label, ctx_a, ctx_b, ctx: string, endings: list<string>,
  source_id, split, split_type: string, label: string.
* allenai/winogrande winogrande_xl: sentence, option1, option2, answer: string ("1" or "2").
* allenai/ai2_arc (ARC-Easy, ARC-Challenge): id, question: string,
  choices: struct<text: list<string>, label: list<string>>, answerKey: string.
* allenai/openbookqa main: id, question_stem: string,
  choices: struct<text: list<string>, label: list<string>>, answerKey: string.
"""

import json
import os

import pyarrow as pa
import pyarrow.parquet as pq

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "eval")

# The first lines of a WikiText-style article (hand-written, in wikitext's raw format: spaces
# around punctuation, " @-@ ", blank lines as " ").
WIKI_LINES = [
    " \n",
    " = Harbour Lights = \n",
    " \n",
    " Harbour Lights is a small lighthouse on the north pier of a fishing town . It was built in 1894 "
    "and stood for a century before it was restored by volunteers in the 1990s . \n",
    " \n",
    " = = History = = \n",
    " \n",
    " The first light was an oil lamp hung from a wooden post . A stone tower replaced it after a "
    "storm in 1893 destroyed the post and two boats . The tower is 12 @.@ 5 metres tall . \n",
    " The lamp was electrified in 1931 , and the keeper 's cottage was sold in 1962 . \n",
]

PTB_SENTENCES = [
    "no it was n't black monday",
    "but while the new york stock exchange did n't fall apart friday as the dow jones industrial "
    "average plunged N points most of it in the final hour it barely managed to stay this side of chaos",
    "some circuit breakers installed after the october N crash failed their first test traders say "
    "unable to cool the selling panic in both stocks and futures",
    "the N stock specialist firms on the big board floor the buyers and sellers of last resort who "
    "were criticized after the N crash once again could n't handle the selling pressure",
]

BOOLQ = [
    {
        "question": "is the lighthouse on the north pier still in use",
        "answer": True,
        "passage": "Harbour Lights -- Harbour Lights is a small lighthouse on the north pier of a fishing town. "
        "It was restored by volunteers and still guides boats into the harbour at night.",
    },
    {
        "question": "can you see the northern lights from the equator",
        "answer": False,
        "passage": "Aurora -- An aurora is a natural light display in the sky, seen mostly in high-latitude "
        "regions around the Arctic and Antarctic.",
    },
    {
        "question": "does bread need yeast to rise",
        "answer": True,
        "passage": "Bread -- Leavened bread rises because yeast or another leavening agent produces gas "
        "that is trapped in the dough.",
    },
]

PIQA = [
    {"goal": "When boiling butter, when it's ready, you can", "sol1": "Pour it onto a plate",
     "sol2": "Pour it into a jar", "label": 1},
    {"goal": "To keep bread fresh for longer,", "sol1": "store it in a paper bag in a cool, dry place.",
     "sol2": "store it in a bowl of water on a sunny windowsill.", "label": 0},
    {"goal": "How do I find my way on a forest walk?", "sol1": "Follow the painted marks on the trees.",
     "sol2": "Follow the clouds overhead.", "label": 0},
]

HELLASWAG = [
    {"ind": 24, "activity_label": "Roof shingle removal", "ctx_a": "A man is sitting on a roof.",
     "ctx_b": "he", "ctx": "A man is sitting on a roof. he",
     "endings": ["is using wrap to wrap a pair of skis.", "is ripping level tiles off.",
                 "is holding a rubik's cube.", "starts pulling up roofing on a roof."],
     "source_id": "activitynet~v_-JhWjGDPHMY", "split": "val", "split_type": "indomain", "label": "3"},
    # A WikiHow row: brackets are the dataset's markup, removed by the harness's `preprocess`.
    {"ind": 4009, "activity_label": "Home and Garden",
     "ctx_a": "[header] How to clean a grill [title] Heat the grill for ten minutes. [step] This loosens the grease.",
     "ctx_b": "then", "ctx": "[header] How to clean a grill [title] Heat the grill for ten minutes. [step] This loosens the grease. then",
     "endings": ["scrub the grates with a wire brush  while they are warm. [substeps] Wear gloves.",
                 "paint the grill [title] blue.", " pour water on the coals.", "sell the grill [step] online."],
     "source_id": "wikihow~6623", "split": "val", "split_type": "zeroshot", "label": "0"},
    {"ind": 92, "activity_label": "Baking cookies", "ctx_a": "A woman mixes flour and butter in a bowl.",
     "ctx_b": "", "ctx": "A woman mixes flour and butter in a bowl. ",
     "endings": ["She rolls the dough into balls.", "She drives a car.", "She swims in the bowl.",
                 "She reads the bowl."],
     "source_id": "activitynet~v_x", "split": "val", "split_type": "indomain", "label": "0"},
]

WINOGRANDE = [
    {"sentence": "Sarah was a much better surgeon than Maria so _ always got the harder cases.",
     "option1": "Sarah", "option2": "Maria", "answer": "1"},
    {"sentence": "The trophy doesn't fit into the brown suitcase because the _ is too large.",
     "option1": "trophy", "option2": "suitcase", "answer": "1"},
    {"sentence": "_ baked bread every morning, but Tom never learned how.",
     "option1": "Anna", "option2": "Tom", "answer": "1"},
]

ARC_EASY = [
    {"id": "Mercury_7179953", "question": "Which tool is best for measuring the length of a pencil?",
     "choices": {"text": ["a ruler", "a balance", "a thermometer", "a graduated cylinder"],
                 "label": ["A", "B", "C", "D"]}, "answerKey": "A"},
    {"id": "NYSEDREGENTS_2015_4_8", "question": "What do plants need to make food?",
     "choices": {"text": ["sunlight", "sand", "moonlight", "wind"], "label": ["1", "2", "3", "4"]},
     "answerKey": "1"},
]

ARC_CHALLENGE = [
    {"id": "Mercury_SC_405487", "question": "One year, the oak trees in a park began producing more acorns "
     "than usual. The next year, the population of chipmunks in the park also increased. Which best "
     "explains why there were more chipmunks the next year?",
     "choices": {"text": ["Shady areas increased.", "Food sources increased.",
                          "Oxygen levels increased.", "Available water increased."],
                 "label": ["A", "B", "C", "D"]}, "answerKey": "B"},
    {"id": "Mercury_7220990", "question": "Which gas do plants take in from the air for photosynthesis?",
     "choices": {"text": ["oxygen", "nitrogen", "carbon dioxide"], "label": ["A", "B", "C"]},
     "answerKey": "C"},
]

OPENBOOKQA = [
    {"id": "7-980", "question_stem": "The sun is responsible for",
     "choices": {"text": ["puppies learning new tricks", "children growing up and getting old",
                          "flowers wilting in a vase", "plants sprouting, blooming and wilting"],
                 "label": ["A", "B", "C", "D"]}, "answerKey": "D"},
    {"id": "7-584", "question_stem": "When food is reduced in the stomach",
     "choices": {"text": ["the mind needs time to digest", "take a second to digest what I said",
                          "nutrients are being deconstructed", "reader's digest is a body of works"],
                 "label": ["A", "B", "C", "D"]}, "answerKey": "C"},
]

LIST_STR = pa.list_(pa.string())
CHOICES = pa.struct([("text", LIST_STR), ("label", LIST_STR)])

SCHEMAS = {
    "boolq": pa.schema([("question", pa.string()), ("answer", pa.bool_()), ("passage", pa.string())]),
    "piqa": pa.schema([("goal", pa.string()), ("sol1", pa.string()), ("sol2", pa.string()), ("label", pa.int64())]),
    "hellaswag": pa.schema([
        ("ind", pa.int32()), ("activity_label", pa.string()), ("ctx_a", pa.string()), ("ctx_b", pa.string()),
        ("ctx", pa.string()), ("endings", LIST_STR), ("source_id", pa.string()), ("split", pa.string()),
        ("split_type", pa.string()), ("label", pa.string()),
    ]),
    "winogrande": pa.schema([("sentence", pa.string()), ("option1", pa.string()), ("option2", pa.string()),
                             ("answer", pa.string())]),
    "arc": pa.schema([("id", pa.string()), ("question", pa.string()), ("choices", CHOICES), ("answerKey", pa.string())]),
    "openbookqa": pa.schema([("id", pa.string()), ("question_stem", pa.string()), ("choices", CHOICES),
                             ("answerKey", pa.string())]),
}


def write_parquet(rel, rows, schema):
    path = os.path.join(OUT, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    table = pa.Table.from_pylist(rows, schema=schema)
    pq.write_table(table, path, compression="snappy")


def write_jsonl(rel, rows):
    path = os.path.join(OUT, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def main():
    os.makedirs(OUT, exist_ok=True)
    # WikiText2: the hub's rows are the raw file's lines ("" for blank ones), as the `wikitext`
    # loading script made them.
    wiki_rows = [line if line.strip() else "" for line in WIKI_LINES]
    write_parquet("wikitext-2-raw-v1/test-00000-of-00001.parquet", [{"text": t} for t in wiki_rows],
                  pa.schema([("text", pa.string())]))
    with open(os.path.join(OUT, "wiki.test.raw"), "w", encoding="utf-8") as f:
        f.write("".join(WIKI_LINES))
    # PTB: rows are the stripped lines of ptb.*.txt (which start with a space).
    write_parquet("penn_treebank/test-00000-of-00001.parquet", [{"sentence": s} for s in PTB_SENTENCES],
                  pa.schema([("sentence", pa.string())]))
    with open(os.path.join(OUT, "ptb.test.txt"), "w", encoding="utf-8") as f:
        f.write("".join(f" {s} \n" for s in PTB_SENTENCES))
    # super_glue's boolq: `label` instead of `answer`, and an `idx`
    super_glue = [{"question": r["question"], "passage": r["passage"], "idx": i, "label": int(r["answer"])}
                  for i, r in enumerate(BOOLQ)]
    write_parquet("super_glue-boolq/validation-00000-of-00001.parquet", super_glue,
                  pa.schema([("question", pa.string()), ("passage", pa.string()), ("idx", pa.int32()),
                             ("label", pa.int64())]))
    tasks = [
        ("boolq", "boolq/validation-00000-of-00001.parquet", BOOLQ, SCHEMAS["boolq"]),
        ("piqa", "piqa/validation-00000-of-00001.parquet", PIQA, SCHEMAS["piqa"]),
        ("hellaswag", "hellaswag/validation-00000-of-00001.parquet", HELLASWAG, SCHEMAS["hellaswag"]),
        ("winogrande", "winogrande/winogrande_xl/validation-00000-of-00001.parquet", WINOGRANDE, SCHEMAS["winogrande"]),
        ("arc_easy", "ai2_arc/ARC-Easy/test-00000-of-00001.parquet", ARC_EASY, SCHEMAS["arc"]),
        ("arc_challenge", "ai2_arc/ARC-Challenge/test-00000-of-00001.parquet", ARC_CHALLENGE, SCHEMAS["arc"]),
        ("openbookqa", "openbookqa/main/test-00000-of-00001.parquet", OPENBOOKQA, SCHEMAS["openbookqa"]),
    ]
    for name, rel, rows, schema in tasks:
        write_parquet(rel, rows, schema)
        write_jsonl(f"jsonl/{name}.jsonl", rows)


if __name__ == "__main__":
    main()
