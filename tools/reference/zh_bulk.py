"""Bulk comparison data for the Chinese front-end: sentences with the reference's readings,
for the ignored test `zh_bulk_matches_reference` in tests/text_frontend.rs.

Sentences come from two sources: Chinese lines found in the docstrings and comments of the
installed Python packages (real prose), and random text built from pypinyin's own tables
(phrases glued together so that phrase boundaries shift, single characters from the whole
character table, punctuation, Latin, digits, emoji). Each gets the reference's full cleaning
(`preprocess_text(..., "zh")`, numbers included) and its bare `chinese_transliterate`.

Usage: python tools/reference/zh_bulk.py [--count 3000] [--out target/zh_bulk.json]
then:  cargo test --test text_frontend zh_bulk -- --ignored --nocapture
"""

import argparse
import importlib.machinery
import importlib.util
import json
import random
import re
import sys
import types
from pathlib import Path

if importlib.util.find_spec("torchcodec") is None:
    stand_in = types.ModuleType("torchcodec")
    stand_in.__spec__ = importlib.machinery.ModuleSpec("torchcodec", None)
    sys.modules["torchcodec"] = stand_in

import pypinyin  # noqa: E402
from TTS.tts.layers.xtts.tokenizer import VoiceBpeTokenizer, chinese_transliterate  # noqa: E402

HANZI_LINE = re.compile(r"[\u4e00-\u9fff]{4,}")
SEPARATORS = [",", "，", "。", "！", "？", " ", "、", "a", "abc", "OK", "1", "12", "3.5", "50%", "\n", "😊", "：", "“", "”"]


def real_lines(limit: int) -> list[str]:
    """Chinese lines from the installed packages' sources, the pinyin tables excluded."""
    site = Path(pypinyin.__file__).parent.parent
    seen, lines = set(), []
    for path in sorted(site.rglob("*")):
        if path.suffix not in {".py", ".pyi", ".txt", ".md", ".rst"} or not path.is_file():
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        for line in text.splitlines():
            line = line.strip().strip("#").strip()
            if HANZI_LINE.search(line) and len(line) < 200 and line not in seen:
                seen.add(line)
                lines.append(line)
    return lines[:limit]


def random_texts(count: int, rng: random.Random) -> list[str]:
    package = Path(pypinyin.__file__).parent
    phrases = list(json.loads((package / "phrases_dict.json").read_text(encoding="utf-8")))
    chars = [chr(int(k)) for k in json.loads((package / "pinyin_dict.json").read_text(encoding="utf-8"))]
    common = [c for c in chars if "\u4e00" <= c <= "\u9fff"]
    texts = []
    for i in range(count):
        if i % 4 == 3:
            # Any characters of the table, rare ones included.
            texts.append("".join(rng.choice(chars) for _ in range(rng.randint(1, 16))))
            continue
        parts = []
        for _ in range(rng.randint(1, 8)):
            roll = rng.random()
            if roll < 0.65:
                parts.append(rng.choice(phrases))
            elif roll < 0.9:
                parts.append(rng.choice(common))
            else:
                parts.append(rng.choice(SEPARATORS))
        texts.append("".join(parts))
    return texts


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--count", type=int, default=3000, help="random sentences")
    p.add_argument("--real", type=int, default=2000, help="at most this many real lines")
    p.add_argument("--seed", type=int, default=11)
    p.add_argument("--out", type=Path, default=Path("target/zh_bulk.json"))
    args = p.parse_args()

    tok = VoiceBpeTokenizer(None)
    rng = random.Random(args.seed)
    cases = []
    for source, texts in [("real", real_lines(args.real)), ("random", random_texts(args.count, rng))]:
        for text in texts:
            case = {"source": source, "text": text, "pinyin": chinese_transliterate(text)}
            try:
                case["cleaned"] = tok.preprocess_text(text.strip().lower(), "zh")
            except Exception as e:  # the number normaliser rejects this input
                case["error"] = type(e).__name__
            cases.append(case)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(cases, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {len(cases)} cases to {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
