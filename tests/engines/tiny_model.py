"""A tiny random Llama for a real engine on CPU, made on the spot (no download).

A byte-level BPE tokenizer is trained on loadkit's own prompt words, so the
prompts loadkit generates tokenize to about a token a word; the model
(2 layers, hidden 32) has random weights from a fixed seed. Its end-of-
sequence id lies outside the vocabulary, so the model can never emit it and
every answer runs to max_tokens: the output length is known exactly.

Run in the engine's environment (which has no loadkit):
python tiny_model.py OUT_DIR WORDS_FILE (the words, one a line)
"""

from __future__ import annotations

import sys
from pathlib import Path

CHAT_TEMPLATE = ("{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
                 "{% if add_generation_prompt %}assistant:{% endif %}")


def make(out: Path, words: list[str]) -> None:
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    specials = ["<unk>"]
    bpe = Tokenizer(models.BPE(unk_token="<unk>"))
    # SentencePiece-style: every token is printable text (no partial bytes).
    bpe.pre_tokenizer = pre_tokenizers.Metaspace()
    bpe.decoder = decoders.Metaspace()
    alphabet = list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789:.,'?!-")
    corpus = [" ".join(words[i:] + words[:i]) for i in range(len(words))]
    bpe.train_from_iterator(corpus, trainers.BpeTrainer(
        vocab_size=512, special_tokens=specials, initial_alphabet=alphabet))
    vocab = bpe.get_vocab_size()
    never = vocab + 7  # an id the model's output layer does not have: no answer ends early
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe, unk_token="<unk>")
    tok.chat_template = CHAT_TEMPLATE
    tok.save_pretrained(out)
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=vocab, hidden_size=32, intermediate_size=64,
                         num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2,
                         max_position_embeddings=16384, bos_token_id=None, eos_token_id=never,
                         pad_token_id=0, tie_word_embeddings=False)
    model = LlamaForCausalLM(config)
    model.generation_config.eos_token_id = never
    model.generation_config.pad_token_id = 0
    # Special tokens decode to nothing: never emitted, so every answer token
    # is text.
    model.generation_config.suppress_tokens = list(range(len(specials)))
    model.save_pretrained(out)


if __name__ == "__main__":
    make(Path(sys.argv[1]), Path(sys.argv[2]).read_text().split())
