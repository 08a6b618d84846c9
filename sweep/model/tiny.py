"""Random-init tiny models of the real families, with tokenizers trained offline on the training
texts: the smoke test and CI exercise the same code paths as BERT-base and ModernBERT-base
without any download."""

from collections import Counter
from typing import Any, Dict, Iterable

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import BertConfig, ModernBertConfig, PretrainedConfig, PreTrainedTokenizerFast

from sweep.config.schema import FAMILY_MODELS
from sweep.errors import InputError

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
FAMILIES = tuple(FAMILY_MODELS)  # each with its tiny architecture in the schema


def _wordpiece_vocab(texts: Iterable[str], vocab_size: int) -> Dict[str, int]:
    """The most frequent words plus every character (as word start and as ## continuation), so any
    word splits into known pieces. Built by counting rather than with WordPieceTrainer, whose
    choice among tied merges changes from one process to the next (runs would not reproduce)."""
    normalizer, splitter = normalizers.BertNormalizer(lowercase=True), pre_tokenizers.BertPreTokenizer()
    counts = Counter(word for text in texts for word, _ in splitter.pre_tokenize_str(normalizer.normalize_str(text)))
    chars = sorted({c for word in counts for c in word})
    pieces = SPECIAL_TOKENS + chars + [f"##{c}" for c in chars]
    words = [w for w, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])) if w not in pieces]
    pieces += words[: max(vocab_size - len(pieces), 0)]
    return {piece: i for i, piece in enumerate(pieces)}


def train_tokenizer(texts: Iterable[str], family: str, vocab_size: int) -> PreTrainedTokenizerFast:
    """A tokenizer of the family's kind, as their real ones: lowercased WordPiece with
    token_type_ids for BERT, byte-level BPE without them for ModernBERT."""
    if family == "bert":
        tok = Tokenizer(models.WordPiece(vocab=_wordpiece_vocab(texts, vocab_size), unk_token="[UNK]"))
        tok.normalizer = normalizers.BertNormalizer(lowercase=True)
        tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tok.decoder = decoders.WordPiece()
        input_names = ["input_ids", "token_type_ids", "attention_mask"]
    elif family == "modernbert":
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            special_tokens=SPECIAL_TOKENS,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        )
        tok.train_from_iterator(texts, trainer=trainer)
        input_names = ["input_ids", "attention_mask"]
    else:
        raise InputError(f"model.family={family!r} has no tiny build; use one of {list(FAMILIES)}")
    cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_input_names=input_names,
    )


def tiny_config(family: str, tokenizer: PreTrainedTokenizerFast, overrides: Dict[str, Any]) -> PretrainedConfig:
    """The family's config at the given small size, its special-token ids taken from the tokenizer
    (ModernBertConfig's defaults point past a small vocabulary)."""
    fields = {**overrides, "vocab_size": len(tokenizer), "pad_token_id": tokenizer.pad_token_id}
    if family == "bert":
        return BertConfig(**fields)
    if family == "modernbert":
        return ModernBertConfig(
            **fields,
            cls_token_id=tokenizer.cls_token_id,
            sep_token_id=tokenizer.sep_token_id,
            bos_token_id=tokenizer.cls_token_id,
            eos_token_id=tokenizer.sep_token_id,
        )
    raise InputError(f"model.family={family!r} has no tiny build; use one of {list(FAMILIES)}")
