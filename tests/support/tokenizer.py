"""A tiny BPE tokenizer trained here, offline (this module holds no tests).

Trained on loadkit's prompt words and the simulator's vocabulary with a
byte-level pre-tokenizer (GPT-2 style: a word with its leading space is one
unit), with enough vocabulary that every such word is one token, and the
digits and punctuation of request numbers split into a few."""

from __future__ import annotations

from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from loadkit.protocols.text import WORDS
from loadkit.sim.openai_wire import _WORDS as SIM_WORDS


def train(path: Path, vocab: int = 2000) -> Path:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    words = sorted(set(WORDS) | set(SIM_WORDS))
    corpus = [" ".join(words[i:] + words[:i]) for i in range(len(words))] * 3
    corpus += [f"{n}: b{n}" for n in range(200)]
    trainer = trainers.BpeTrainer(vocab_size=vocab,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(corpus, trainer)
    tok.save(str(path))
    return path
