"""Write a tiny llama-architecture GGUF that the real llama-server loads in well under a second.

Random weights, 2 layers, 64-wide, a SentencePiece-style vocabulary of ~330 tokens (control tokens,
the 256 byte-fallback tokens llama.cpp's SPM tokenizer needs for any input, and a few pieces), and a
chat template in the metadata so /v1/chat/completions works without --chat-template-file.
The output is nonsense text, which is all a test of plumbing needs.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

N_EMBD = 64
N_LAYER = 2
N_CTX_TRAIN = 2048

CHATML = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


def _vocab() -> tuple[list[str], list[float], list[int]]:
    tokens, scores, types = ["<unk>", "<s>", "</s>"], [0.0, 0.0, 0.0], [2, 3, 3]
    for b in range(256):
        tokens.append(f"<0x{b:02X}>")
        scores.append(0.0)
        types.append(6)  # byte
    pieces = ["\u2581"] + [chr(c) for c in range(ord("a"), ord("z") + 1)] + [
        "\u2581the", "\u2581a", "\u2581hello", "\u2581world", "\u2581is", "\u2581of", "\u2581and",
        "er", "in", "on", "at", "es", "ed", "ing", ".", ",", "!", "?",
    ] + [f"\u2581{c}" for c in "abcdefghijklmnopqrstuvwxyz"]
    pieces = list(dict.fromkeys(pieces))  # llama.cpp asserts that every token is unique
    for i, p in enumerate(pieces):
        tokens.append(p)
        scores.append(-float(i + 1))
        types.append(1)
    return tokens, scores, types


def write_tiny_gguf(path: str | os.PathLike, *, shards: int = 1, seed: int = 0,
                    width: int = N_EMBD) -> list[Path]:
    """Write the model at `path` (one file) or as `shards` split files named like llama.cpp's
    `gguf-split` output (`stem-00001-of-0000N.gguf`). Returns the written paths.
    `width` (a multiple of 64) makes a bigger file of the same shape: 512 gives about 20 MB."""
    n_embd, n_ff = width, 2 * width
    import gguf

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    tokens, scores, types = _vocab()
    n_vocab = len(tokens)

    tensors: list[tuple[str, np.ndarray]] = []

    def t(name: str, *shape: int, ones: bool = False) -> None:
        arr = np.ones(shape, dtype=np.float32) if ones else \
            (rng.standard_normal(shape, dtype=np.float32) * 0.02)
        tensors.append((name, arr))

    # numpy shape is (rows, cols) = ggml (ne1, ne0)
    t("token_embd.weight", n_vocab, n_embd)
    for i in range(N_LAYER):
        t(f"blk.{i}.attn_norm.weight", n_embd, ones=True)
        t(f"blk.{i}.attn_q.weight", n_embd, n_embd)
        t(f"blk.{i}.attn_k.weight", n_embd, n_embd)
        t(f"blk.{i}.attn_v.weight", n_embd, n_embd)
        t(f"blk.{i}.attn_output.weight", n_embd, n_embd)
        t(f"blk.{i}.ffn_norm.weight", n_embd, ones=True)
        t(f"blk.{i}.ffn_gate.weight", n_ff, n_embd)
        t(f"blk.{i}.ffn_up.weight", n_ff, n_embd)
        t(f"blk.{i}.ffn_down.weight", n_embd, n_ff)
    t("output_norm.weight", n_embd, ones=True)
    t("output.weight", n_vocab, n_embd)

    split_max = 0
    if shards > 1:
        split_max = -(-len(tensors) // shards)
    w = gguf.GGUFWriter(path, "llama", split_max_tensors=split_max)
    w.add_name("tiny-test")
    w.add_context_length(N_CTX_TRAIN)
    n_head = n_embd // 32  # head size 32
    w.add_embedding_length(n_embd)
    w.add_block_count(N_LAYER)
    w.add_feed_forward_length(n_ff)
    w.add_head_count(n_head)
    w.add_head_count_kv(n_head)
    w.add_rope_dimension_count(n_embd // n_head)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_file_type(0)  # all F32
    w.add_tokenizer_model("llama")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_unk_token_id(0)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_add_bos_token(True)
    w.add_add_eos_token(False)
    w.add_chat_template(CHATML)
    for name, arr in tensors:
        w.add_tensor(name, arr)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    if shards > 1:
        return [path.with_name(f"{path.stem}-{i:05d}-of-{shards:05d}.gguf") for i in range(1, shards + 1)]
    return [path]
