"""Writes a bulk comparison set for the Japanese front-end: real Japanese sentences (the
message catalogues under /usr/share/locale/ja and other Japanese text files given on the
command line) plus random character mixes, each with the reference's cleaned string.

Usage: python tools/reference/ja_bulk.py [--count 3000] [--random 1000] [--unicode 1000]
                                         [--out target/ja_bulk.jsonl] [FILE...]
--random mixes the character classes MeCab tells apart; --unicode draws from wide Unicode
blocks (symbols, compatibility forms, CJK, kana extensions) to exercise normalisation.
Then:  cargo test --test text_frontend japanese_bulk -- --ignored --nocapture
(JA_BULK=path picks another file.) A one-off measurement, not a test with a pass mark.
"""

import argparse
import gettext
import json
import random
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from text_goldens import VoiceBpeTokenizer  # noqa: E402  (also installs the torchcodec stand-in)

JAPANESE = re.compile(r"[\u3040-\u30ff\u4e00-\u9fff]")


def catalogue_lines() -> list[str]:
    lines = []
    for mo in sorted(Path("/usr/share/locale/ja/LC_MESSAGES").glob("*.mo")):
        try:
            with open(mo, "rb") as f:
                catalog = gettext.GNUTranslations(f)._catalog
        except Exception:
            continue
        for value in catalog.values():
            lines.extend(str(value).splitlines())
    return lines


def random_mix(rng: random.Random) -> str:
    """A random string from the character classes MeCab tells apart."""
    pools = [
        "あいうえおかきくけこさしすせそたちつてとなにぬねのはひふへほまみむめもやゆよらりるれろわをんがぎぐげござじずぜぞだでどばびぶべぼぱぴぷぺぽゃゅょっー",
        "アイウエオカキクケコサシスセソタチツテトナニヌネノハヒフヘホマミムメモヤユヨラリルレロワヲンガギグゲゴヴァィゥェォャュョッー",
        "日本語東京大阪学校先生電車会社時間今日明日昨年月火水木金土人大小山川田中本見行来食飲読書話聞言思新古高安長短",
        "。、？！「」『』（）・：ー〜…",
        "abcdefxyzABC 0123456789.,!?'-",
        "０１２３ＡＢＣｶﾀｶﾅ々ゝゞ€¥안녕",
    ]
    weights = [30, 20, 30, 8, 8, 4]
    length = rng.randint(1, 30)
    return "".join(rng.choice(rng.choices(pools, weights)[0]) for _ in range(length))


UNICODE_BLOCKS = [
    ((0x20, 0x7E), 1), ((0xA0, 0x24F), 1), ((0x2000, 0x2BFF), 1), ((0x3000, 0x30FF), 6), ((0x31F0, 0x31FF), 1),
    ((0x3200, 0x33FF), 1), ((0x4E00, 0x9FFF), 6), ((0xF900, 0xFAFF), 1), ((0xFE30, 0xFE4F), 1),
    ((0xFF00, 0xFFEF), 2), ((0x1B000, 0x1B16F), 1), ((0x1F100, 0x1F2FF), 1),
]


def unicode_mix(rng: random.Random) -> str:
    """Random code points from blocks where normalisation and MeCab's character classes matter."""
    blocks = [b for b, _ in UNICODE_BLOCKS]
    weights = [w for _, w in UNICODE_BLOCKS]
    return "".join(chr(rng.randint(*rng.choices(blocks, weights)[0])) for _ in range(rng.randint(1, 20)))


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--count", type=int, default=3000)
    p.add_argument("--random", type=int, default=1000)
    p.add_argument("--unicode", type=int, default=1000)
    p.add_argument("--out", type=Path, default=Path("target/ja_bulk.jsonl"))
    p.add_argument("files", nargs="*", type=Path)
    args = p.parse_args()

    lines = catalogue_lines()
    for path in args.files:
        lines.extend(path.read_text(encoding="utf-8", errors="replace").splitlines())
    seen, real = set(), []
    for line in lines:
        line = line.strip()
        if JAPANESE.search(line) and len(line) <= 200 and line not in seen:
            seen.add(line)
            real.append(line)
    rng = random.Random(11)
    rng.shuffle(real)
    texts = real[: args.count] + [random_mix(rng) for _ in range(args.random)]
    texts += [unicode_mix(rng) for _ in range(args.unicode)]

    tok = VoiceBpeTokenizer(None)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as out:
        for text in texts:
            case = {"text": text}
            try:
                case["cleaned"] = tok.preprocess_text(text.strip().lower(), "ja")
            except Exception as e:
                case["error"] = type(e).__name__
            out.write(json.dumps(case, ensure_ascii=False) + "\n")
    print(f"wrote {len(texts)} texts ({min(len(real), args.count)} real sentences) to {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
