"""Writes tests/fixtures/text/cases.json and numbers.json: reference cleaned strings and token ids of the
XTTS text front-end (coqui-tts 0.28.0 VoiceBpeTokenizer, num2words 0.5.14, pypinyin,
cutlet + unidic-lite, ko-speech-tools), for tests/text_frontend.rs.

Usage: python tools/reference/text_goldens.py [--vocab tests/fixtures/tiny/model/vocab.json]
Without a vocab only the cleaned strings are written. numbers.json holds cleaned strings only:
cardinals, ordinals, decimals and currency amounts for every language whose number words
are ported (NUMBER_LANGS), and the Chinese numeral readings of zh_num2words.

A case whose reference raises is recorded with "error" (the exception type) instead.
"""

import argparse
import importlib.machinery
import importlib.util
import json
import random
import sys
import types
from importlib.metadata import version
from pathlib import Path

# coqui-tts refuses to import on torch >= 2.9 without torchcodec, which only its audio loader
# needs; the text front-end does not, so an empty stand-in module is enough here.
if importlib.util.find_spec("torchcodec") is None:
    stand_in = types.ModuleType("torchcodec")
    stand_in.__spec__ = importlib.machinery.ModuleSpec("torchcodec", None)
    sys.modules["torchcodec"] = stand_in

from TTS.tts.layers.xtts.tokenizer import VoiceBpeTokenizer  # noqa: E402

CASES = {
    "en": [
        "Hello Mr. Smith, that is $20.50 & 3rd place: 1,000 \"people\"",
        "Dr. Jones paid £1,250 for 2 tickets on the 21st.",
        "It's 12.5% colder at 9:45, about 3.14 degrees below 0°.",
        "Capt. O'Neil lives at 221B Baker St. #42 @ London.",
        "The 101st airborne had 1000000 men and 15 €.",
        "We sold 1,234,567 units, up 7.25 percent from 2023.",
    ],
    "es": [
        "Hola Sr. García, son 20,50€ y el 1er premio.",
        "La Dra. Martínez tiene 1.250 pacientes & 3 asistentes.",
        "El 2º piso mide 12,5 metros; cuesta $100.",
        "Hay 21 personas y 100% de 1.000.000 votos.",
        "El 15 de mayo pagué £3 por 2 cafés.",
    ],
    "fr": [
        "Bonjour Mr. Dupont, cela fera 20,15€ pour le 1er prix.",
        "Il y a 80 personnes & 71 chiens @ Paris.",
        "Le 2e étage coûte 1.250,50 $ et 91%.",
        "Mme. Moreau a 21 ans et 100 amis.",
        "Il fait 12,5° dehors, 181 jours sur 365.",
    ],
    "de": [
        "Frau Dr. Müller zahlt 20,15€ für den 1. Platz.",
        "Es gab 1.250 Soldaten & 21 Pferde.",
        "Das kostet $100 und 12,5% Steuern.",
        "Die 3. Auflage hat 1.000.000 Exemplare, St. Pauli 1999.",
        "Es sind 7° draußen, £2 pro Stück.",
    ],
    "it": [
        "Buongiorno Sig. Rossi, sono 20,15€ per il 1° posto.",
        "C'erano 23 soldati & 1.250 cavalli.",
        "Costa $100 e il 12,5% di tasse.",
        "Il 33o anniversario, 1.000.000 di persone.",
        "Fa 7° fuori, £1 a testa, 103 anni.",
    ],
    "pt": [
        "Olá Sr. Silva, são 20,15€ pelo 1º lugar.",
        "Havia 1.250 soldados & 21 cavalos.",
        "Custa $100 e 12,5% de impostos.",
        "A Dra. Costa tem 1.000.000 de livros e 2 carros.",
        "Estão 7° lá fora, 3 cafés por £2.",
    ],
    "pl": [
        "Dzień dobry, P. Kowalski, to kosztuje 20,15€.",
        "Było 1.250 żołnierzy & 22 konie.",
        "To jest 1st miejsce, 12,5% podatku.",
        "Dr. Nowak ma 1.000.000 książek i 5 psów.",
        "Na dworze jest 7°, $3 za sztukę.",
    ],
    "nl": [
        "Dhr. Jansen betaalt 20,15€ voor de 1ste plaats.",
        "Er waren 1.250 soldaten & 21 paarden.",
        "Het kost $100 en 12,5% belasting.",
        "Mevr. de Vries heeft 1.000.000 boeken en 2 katten.",
        "Het is 7° buiten, £3 per stuk, de 3e keer.",
    ],
    "cs": [
        "Dr. Novák zaplatil 20,15€ za 2 lístky.",
        "Bylo tam 1.250 vojáků & 22 koní.",
        "Stojí to 12,5% a 100 korun.",
        "Ing. Dvořák má 1.000.000 knih a 5 psů.",
        "Venku je 7°, P. Svoboda přijde.",
    ],
    "ru": [
        "Здравствуйте Г-н Иванов, это стоит 20.15€.",
        "Там было 1,250 солдат & 22 лошади.",
        "Это 12.5% и $100, 1-й раз.",
        "Д-р Смирнов прочитал 1000000 книг и 5 статей.",
        "На улице 7°, 21 человек.",
    ],
    "tr": [
        "Merhaba B. Yılmaz, bu 20 lira.",
        "İstanbul'da 1.250 asker & 22 at vardı.",
        "Bu 1. test, yüzde %14 dolu.",
        "Dr. Ayşe 1.000.000 kitap okudu ve 5 kedi besledi.",
        "Dışarıda 7° var, ÖĞRENCİ ÜNİVERSİTE.",
    ],
    "hu": [
        "Dr. Szabó 20,15€-t fizetett az 1. helyért.",
        "Volt 1.250 katona & 22 ló.",
        "Ez 12,5% és $100.",
        "A 3. kiadás 1.000.000 példány, 2023 óta.",
        "Kint 7° van, 45 perc múlva.",
    ],
    "ar": [
        "كان هناك 50 جنديًا & 3 خيول.",
        "في الـ 12,5 ثانية.",
        "السعر 20 € و 100%.",
        "لدي 1.250 كتاب @ المكتبة.",
    ],
    "zh-cn": [
        "你好，在12.5秒内。",
        "有50名士兵！",
        "我的电量为14%。",
        "他说：“今天是星期一。”",
        "重庆和长城都很美",
        "请拨打010-12345678或13812345678。",
        "您的订单号是20231105，金额为1,250元。",
        "会议在2024年3月15日，共有25个人参加。",
        "增长了3.5%，约有1/4的用户！",
        "第2名得分为99.5分",
        # Heteronyms read by phrase.
        "银行的行长正在行走。",
        "音乐让人快乐，朝阳区的朝代很长。",
        "他还是还了钱，重要的事重新做。",
        "这个地方的地道小吃很地道。",
        "大夫说长大了就好了。",
        "我们还没有得到答案，你得快点儿。",
        "曾国藩曾经来过这里。",
        "数一数有几个数字，都是几乎一样的。",
        # Neutral tones (5) and 一/不 as the phrase table reads them.
        "东西在桌子上，衣裳是妈妈的。",
        "你吃了吗？我们走吧，好不好呢",
        "一个人，一百个人，一样不一样，不是不对。",
        # ü written v.
        "女孩子去旅游，绿色的树叶，战略和策略。",
        # Long phrases, idioms, names.
        "中华人民共和国成立于一九四九年。",
        "一丝不苟，一心一意，画蛇添足。",
        "欧阳修和司马光都是宋朝人。",
        # A run that ends inside a longer phrase is read character by character.
        "一块石头落了。",
        "一步一个脚",
        "一动不如一",
        # Latin, digits and symbols between Hanzi pass through.
        "我用iPhone手机上网，AI技术和GPS导航。",
        "版本v2.0发布了，支持5G网络",
        "价格是$100或者€50，邮箱是test@example.com",
        "今天天气很好😊我们去公园吧",
        # Characters outside the everyday set.
        "〇和零，𠀀是扩展字",
        "嗯，呣，㕶",
        "兙和瓩没有读音表",
        "這個問題很難回答，謝謝你們的幫助。",
        "日本語のひらがなと中文混合",
        "全角ＡＢＣ和半角abc，１２３",
        # Whitespace and line breaks inside the text.
        "第一行\n第二行\t第三行  第四行",
        "  前后有空格  ",
        # Numbers read into Hanzi, then pinyin by phrase.
        "我有2个苹果和3本书。",
        "他今年25岁，身高1.8米。",
        "时间是2023年12月31日下午3点。",
        "这本书第3章第12页",
        "打一折，买一送一，一共1000元",
        "百分之五十的人同意，有30%反对。",
        "他跑了100米，用时10.5秒。",
        "电话号码是021-66668888",
        # Longer sentences.
        "随着人工智能技术的快速发展，语音合成已经广泛应用于客服、导航和教育等领域。",
        "尽管天气不好，但是我们还是决定按照原计划出发，希望一路顺利。",
        "这家银行的服务非常周到，工作人员都很热情地帮助每一位顾客。",
        "为了更好地了解市场需求，公司进行了大量的调查研究。",
    ],
    "ko": [
        "안녕하세요, 반갑습니다.",
        "12.5 초 안에.",
        "50 명의 병사가 있었다.",
        "이것은 1 번째 테스트입니다",
        "배터리 잔량이 14%입니다.",
    ],
    "ja": [
        "こんにちは、元気ですか？",
        "カタカナとひらがな。",
        "東京に行きます。",
        "ちょっと待ってください",
        "すみません",
        "もしもし",
        "ちょっと",
        "ガッコウ",
        "ありがとう",
        "私は学生です。",
        "駅へ行きましょう。",
        "本を読みました。",
        "カツカレーを食べた。",
        "コンピューターとインターネットを使います。",
        "そうでした、忘れていました。",
        "思えば遠くへ来たものだ。",
        "お酒を飲みすぎないでください。",
        "図書館で田中さんに会いました。",
        "電車に乗った。",
        "今日は2024年3月15日です。",
        "電話番号は０３－１２３４－５６７８です。",
        "価格は1,250円です。",
        "彼は「こんにちは」と言った。",
        "『吾輩は猫である』を読んだ？",
        "（注意）この先、工事中！",
        "東京・大阪・京都",
        "時々、いすゞの車を見ます。",
        "禁煙席はありますか？",
        "ｶﾀｶﾅの半角テキスト",
        "ＡＢＣとabcは同じですか。",
        "iPhone 15 Proを買いました。",
        "Bob's cat is cute.",
        "I love sushi and ramen.",
        "Pythonでプログラムを書く。",
        "ヴァイオリンのコンサートに行った。",
        "ウィキペディアでフェスティバルを調べた。",
        "100€と500¥を払った。",
        "안녕하세요と言いました。",
        "ピカチュウとゴジラ",
        "ラーメンを食べたい！",
        "お弁当を持ってきた。",
        "柔道の練習は毎日あります。",
        "明日は雨が降るでしょう。",
        "この本はとても面白かったです。",
        "私の名前はジョンです。",
        "新しいスマートフォンがほしい。",
        "駅まで歩いて5分です。",
        "ええっ、本当？",
        "あっ！",
        "ふーん、そうなんだ。",
        "マクドナルドでハンバーガーを注文した。",
        "東京スカイツリーは高い。",
        "コーヒー、紅茶、ジュース",
        "3.14は円周率です。",
        "33歳の誕生日おめでとう！",
        "日本語を勉強しています。",
        "彼女はピアノを弾くのが上手だ。",
        "雪が降っています。",
        "富士山に登りたいです。",
        "「はい」と答えた。",
    ],
    "hi": [
        "नमस्ते, आप कैसे हैं?",
        "मेरे पास बैटरी है & फोन @ घर।",
        "यह बहुत अच्छा है।",
        "मेरे पास 14% बैटरी है।",
    ],
}

# Languages whose Rust front-end is known to differ on these cases, and why. The test
# reports them and checks they still differ, so a fix is noticed.
KNOWN_MISMATCH = {
}

# Single cases known to differ, and why.
KNOWN_MISMATCH_TEXTS = {
}

# Languages whose num2words readings are ported.
NUMBER_LANGS = ["en", "es", "fr", "de", "it", "pt", "pl", "nl", "cs", "hu", "ko", "ru", "tr", "ar"]
ORDINAL_SUFFIX = {
    "en": "th", "es": "º", "fr": "e", "de": ".", "it": "º", "pt": "º", "pl": "º", "nl": "e", "cs": ".", "hu": ".",
    "ko": "번째", "ru": "-й", "tr": ".", "ar": "ون",
}


def number_texts(lang: str) -> list[str]:
    """Short texts with one number each, covering every reading the cleaners make."""
    rng = random.Random(7)
    ints = list(range(0, 32)) + [40, 55, 71, 80, 81, 91, 99, 100, 101, 110, 111, 123, 200, 999, 1000, 1001, 1100, 1200]
    ints += [2000, 2001, 10000, 21000, 100000, 999999, 1000000, 1000001, 2000000, 10**9, 10**12, 3 * 10**9 + 7]
    ints += [rng.randint(0, 10**7) for _ in range(40)]
    point = "." if lang in ("en", "ru") else ","
    decimals = ["0 5", "1 5", "12 5", "3 14", "100 5", "2 05", "0 01", "7 25", "99 99", "1 001", "12 0", "5 10"]
    amounts = ["0", "1", "2", "20", "21", "100", "1000", "20.15", "1.01", "0.5", "1234.56", "3,5", "0.01", "5.05"]
    texts = [f"x {i} y" for i in ints]
    texts += [f"x {i}{ORDINAL_SUFFIX[lang]} y" for i in ints[:45]]
    texts += ["x " + d.replace(" ", point) + " y" for d in decimals]
    texts += [f"x {c}{a} y" for c in ["$", "£", "€"] for a in amounts]
    return texts


def zh_number_texts() -> list[str]:
    """Chinese number readings (zh_num2words): quantities, decimals, percentages, digit strings."""
    rng = random.Random(7)
    ints = list(range(0, 32)) + [40, 99, 100, 101, 110, 200, 1000, 1001, 2000, 10000, 20000, 100000, 10**8, 2 * 10**8]
    texts = [f"x {i}个 y" for i in ints]
    texts += [f"x {i} y" for i in ints[:40]]
    texts += [f"x {rng.randint(0, 10**7)}元 y" for _ in range(20)]
    texts += [f"x {d} y" for d in ["0.5", "1.5", "12.5", "3.14", "100.05", "2.25"]]
    texts += [f"x {p}% y" for p in ["5", "14", "50", "100", "12.5", "0.5"]]
    texts += [f"x {rng.randint(1000, 10**11)} y" for _ in range(20)]
    return texts


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--vocab", type=Path)
    p.add_argument("--out", type=Path, default=Path("tests/fixtures/text/cases.json"))
    args = p.parse_args()

    tok = VoiceBpeTokenizer(str(args.vocab) if args.vocab else None)
    cases = []
    for lang, sentences in CASES.items():
        for text in sentences:
            # What Xtts.inference does before encode().
            prepared = text.strip().lower()
            case = {"lang": lang, "text": text}
            try:
                case["cleaned"] = tok.preprocess_text(prepared, lang.split("-")[0])
                if tok.tokenizer is not None:
                    case["tokens"] = tok.encode(prepared, lang)
            except Exception as e:  # the reference rejects this input
                case.pop("cleaned", None)
                case["error"] = type(e).__name__
            if lang in KNOWN_MISMATCH:
                case["known_mismatch"] = KNOWN_MISMATCH[lang]
            elif text in KNOWN_MISMATCH_TEXTS:
                case["known_mismatch"] = KNOWN_MISMATCH_TEXTS[text]
            cases.append(case)

    versions = {name: version(name) for name in ["coqui-tts", "num2words", "pypinyin", "cutlet", "ko-speech-tools"]}
    doc = {"generated_by": "tools/reference/text_goldens.py", "versions": versions, "cases": cases}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {len(cases)} cases to {args.out}", file=sys.stderr)

    numbers = []
    for lang in NUMBER_LANGS:
        for text in number_texts(lang):
            case = {"lang": lang, "text": text}
            try:
                case["cleaned"] = tok.preprocess_text(text.strip().lower(), lang)
            except Exception as e:  # num2words raises for this reading
                case["error"] = type(e).__name__
            numbers.append(case)
    for text in zh_number_texts():
        case = {"lang": "zh-cn", "text": text}
        try:
            case["cleaned"] = tok.preprocess_text(text.strip().lower(), "zh")
        except Exception as e:
            case["error"] = type(e).__name__
        numbers.append(case)
    out = args.out.with_name("numbers.json")
    doc = {"generated_by": "tools/reference/text_goldens.py", "versions": versions, "cases": numbers}
    out.write_text(json.dumps(doc, ensure_ascii=False, indent=0) + "\n", encoding="utf-8")
    print(f"wrote {len(numbers)} cases to {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
