"""The llama-cpp-python engine of the llama-cpp backend (its servicer: :mod:`.servicer`).

Every llama_cpp call, its import included, runs on one dedicated worker thread for the
life of the process. With OpenMP builds, decode gets about a third slower once a second OS
thread has run llama compute, so gRPC handler threads only queue jobs and relay results
(a per-request queue carries streamed pieces back). Requests run one at a time, FIFO.

Generation uses ``Llama.generate`` with its own small loop (exact token counts, cached
token pieces, incremental UTF-8 decoding and stop-word hold-back), so Predict and
PredictStream produce the same text.

``ModelOptions.Options`` entries (``"key:value"``; a bare key means true):

- ``no_mmap`` or ``use_mmap:false``: load the file into memory instead of mmap-ing it
- ``n_ubatch:N``: physical batch size (default: NBatch)
- ``chat_format:NAME``: use llama-cpp-python's ``format_NAME`` (e.g. ``chatml``) instead of
  the GGUF's own chat template
- ``last_n_tokens:N``: window of the repeat penalty (default 64)
- ``offload_kqv:false``, ``swa_full:true``: llama.cpp context flags
- ``embd_normalize:false``: return raw instead of L2-normalised embeddings
"""

from __future__ import annotations

import codecs
import ctypes
import json
import math
import os
import random
import time
from typing import Any

from localai.backend_server import (BadRequest, NotLoaded, chat_message, model_file, parse_options, template_kwargs,
                                    truthy)
from localai.backend_chat import Plan, PlanError, StreamShaper, finish_reply, plan
from localai.backend_worker import Job
from localai.proto import backend_pb2

from .constraints import find_stop, partial_stop, schema_grammar

llama_cpp: Any = None  # imported on the worker thread by LoadModel


class Engine:
    """The llama_cpp state. Every method runs on the worker thread only."""

    def __init__(self) -> None:
        self.llm: Any = None
        self.emb: Any = None
        self.kwargs: dict[str, Any] = {}
        self.options: dict[str, str] = {}
        self.formatter: Any = None
        self.pieces: dict[int, tuple[bytes, bool]] = {}

    # -- lifecycle ---------------------------------------------------------------------

    def load(self, job: Job, req: Any) -> Any:
        """LoadModel: build the Llama (and the embedding model when asked)."""
        global llama_cpp
        if llama_cpp is None:
            import llama_cpp as _llama_cpp

            llama_cpp = _llama_cpp
        path = model_file(req)
        if not path:
            return backend_pb2.Result(success=False, message="no model file given (ModelFile or Model)")
        if not os.path.isfile(path):
            return backend_pb2.Result(success=False, message=f"model file not found: {path}")
        opts = parse_options(req.Options)
        threads = req.Threads or os.cpu_count() or 1
        n_batch = req.NBatch or 512
        kwargs: dict[str, Any] = dict(
            model_path=path,
            n_ctx=req.ContextSize or 2048,
            n_threads=threads,
            n_threads_batch=threads,
            n_gpu_layers=req.NGPULayers,
            use_mmap=not ("no_mmap" in opts or opts.get("use_mmap", "true").lower() == "false"),
            use_mlock=req.MLock,
            n_batch=n_batch,
            n_ubatch=int(opts.get("n_ubatch", n_batch)),
            flash_attn=truthy(req.FlashAttention),
            last_n_tokens_size=int(opts.get("last_n_tokens", 64)),
            verbose=False,
        )
        if req.Seed:
            kwargs["seed"] = req.Seed & 0xFFFFFFFF
        if req.RopeFreqBase:
            kwargs["rope_freq_base"] = req.RopeFreqBase
        if req.RopeFreqScale:
            kwargs["rope_freq_scale"] = req.RopeFreqScale
        if "offload_kqv" in opts:
            kwargs["offload_kqv"] = truthy(opts["offload_kqv"])
        if "swa_full" in opts:
            kwargs["swa_full"] = truthy(opts["swa_full"])
        self.free(job)
        try:
            self.llm = llama_cpp.Llama(**kwargs)
            self.kwargs, self.options = kwargs, opts
            self.formatter = self._chat_formatter(opts.get("chat_format"))
            if req.Embeddings:
                self._embedder()
        except Exception as exc:  # noqa: BLE001 - reported to the caller
            self.free(job)
            return backend_pb2.Result(success=False, message=f"failed to load {path}: {exc}")
        return backend_pb2.Result(success=True, message="Model loaded successfully")

    def free(self, job: Job | None = None) -> Any:
        """Free: drop the Llama objects (their destructors free llama.cpp memory)."""
        for llm in (self.llm, self.emb):
            if llm is not None:
                try:
                    llm.close()
                except Exception:  # noqa: BLE001
                    pass
        self.llm = self.emb = self.formatter = None
        self.pieces = {}
        return backend_pb2.Result(success=True, message="model freed")

    def _require(self) -> Any:
        if self.llm is None:
            raise NotLoaded("model not loaded")
        return self.llm

    def _chat_formatter(self, name: str | None) -> Any:
        from llama_cpp import llama_chat_format as lcf

        llm = self.llm
        if name:
            fmt = getattr(lcf, "format_" + name.replace("-", "_").replace(".", "_"), None)
            if fmt is None:
                raise ValueError(f"unknown chat_format {name!r}")
            return fmt
        template = llm.metadata.get("tokenizer.chat_template")
        if not template:
            return lcf.format_chatml

        def text(tok: int) -> str:
            return llm._model.token_get_text(tok) if tok != -1 else ""

        return lcf.Jinja2ChatFormatter(
            template=template,
            eos_token=text(llm.token_eos()),
            bos_token=text(llm.token_bos()),
        )

    def _embedder(self) -> Any:
        """The mean-pooling embedding model, created on first use."""
        if self.emb is None:
            self._require()
            n_ctx = self.kwargs["n_ctx"]
            self.emb = llama_cpp.Llama(
                **{
                    **self.kwargs,
                    "n_batch": n_ctx,
                    "n_ubatch": n_ctx,
                    "embedding": True,
                    "pooling_type": llama_cpp.LLAMA_POOLING_TYPE_MEAN,
                }
            )
        return self.emb

    # -- generation --------------------------------------------------------------------

    def _piece(self, tok: int) -> tuple[bytes, bool]:
        """(text bytes, is end-of-generation) of one token, cached per model."""
        vocab = self.llm._model.vocab
        buf = ctypes.create_string_buffer(256)
        n = llama_cpp.llama_token_to_piece(vocab, tok, buf, len(buf), 0, False)
        if n < 0:
            buf = ctypes.create_string_buffer(-n)
            n = llama_cpp.llama_token_to_piece(vocab, tok, buf, len(buf), 0, False)
        piece = buf.raw[: max(n, 0)]
        info = (piece, bool(llama_cpp.llama_vocab_is_eog(vocab, tok)))
        self.pieces[tok] = info
        return info

    def _logprob(self, tok: int, piece: bytes, top_n: int) -> dict[str, Any]:
        """OpenAI's logprobs entry of a sampled token, from the logits it was sampled from."""
        import numpy as np

        llm = self.llm
        logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(llm._ctx.ctx, -1), shape=(llm.n_vocab(),))
        peak = float(logits.max())
        norm = peak + math.log(float(np.exp(logits - peak).sum()))

        def entry(token: int, raw: bytes) -> dict[str, Any]:
            return {"token": raw.decode("utf-8", "replace"), "logprob": float(logits[token]) - norm, "bytes": list(raw)}

        out = entry(tok, piece)
        top: list[dict[str, Any]] = []
        if top_n > 0:
            best = np.argpartition(-logits, top_n)[:top_n]
            for token in best[np.argsort(-logits[best])]:
                raw = (self.pieces.get(int(token)) or self._piece(int(token)))[0]
                top.append(entry(int(token), raw))
        out["top_logprobs"] = top
        return out

    def _prompt(self, req: Any, prepared: Plan) -> tuple[list[int], list[str]]:
        """Prompt tokens and extra stop words (from the chat template, if used)."""
        llm = self.llm
        extra_stops: list[str] = []
        if prepared.messages:
            res = self.formatter(messages=prepared.messages, **template_kwargs(req.Metadata))
            text, add_bos = res.prompt, not res.added_special
            if res.stop:
                extra_stops = [res.stop] if isinstance(res.stop, str) else list(res.stop)
        else:
            text, add_bos = req.Prompt, True
        tokens = llm.tokenize(text.encode("utf-8"), add_bos=add_bos, special=True) if text else []
        bos = llm.token_bos()
        if tokens[:2] == [bos, bos]:
            tokens = tokens[1:]
        if not tokens:
            if bos == -1:
                raise BadRequest("empty prompt")
            tokens = [bos]
        return tokens, [s for s in extra_stops if s]

    def generate(self, job: Job, req: Any, stream: bool) -> Any:
        """Predict/PredictStream: streamed pieces go to ``job.out``; returns the last Reply."""
        llm = self._require()
        t0 = time.perf_counter()
        messages = [chat_message(m) for m in req.Messages] if req.UseTokenizerTemplate and req.Messages else None
        try:
            prepared = plan(req.Tools, req.ToolChoice, req.Metadata, messages)
        except PlanError as exc:
            raise BadRequest(str(exc)) from None
        tokens, stops = self._prompt(req, prepared)
        stops = [s for s in req.StopPrompts if s] + stops
        n_prompt = len(tokens)
        room = llm.n_ctx() - n_prompt
        if room <= 0:
            raise BadRequest(f"the prompt has {n_prompt} tokens, the context size is {llm.n_ctx()}")
        max_tokens = min(req.Tokens, room) if req.Tokens > 0 else room
        grammar = None
        if req.Grammar and prepared.schema is not None:
            raise BadRequest("a grammar cannot be combined with a response schema or a forced tool call")
        if req.Grammar or prepared.schema is not None:
            try:
                source = req.Grammar or schema_grammar(json.dumps(prepared.schema, sort_keys=True))
                grammar = llama_cpp.LlamaGrammar.from_string(source, verbose=False)
            except Exception as exc:  # noqa: BLE001
                raise BadRequest(f"invalid grammar or JSON schema: {exc}") from exc
        llm.set_seed((req.Seed & 0xFFFFFFFF) if req.Seed else random.getrandbits(32))
        gen = llm.generate(
            tokens,
            top_k=req.TopK or 40,
            top_p=req.TopP or 0.95,
            min_p=req.MinP,
            typical_p=req.TypicalP or 1.0,
            temp=req.Temperature,
            repeat_penalty=req.Penalty or 1.0,
            frequency_penalty=req.FrequencyPenalty,
            presence_penalty=req.PresencePenalty,
            mirostat_mode=req.Mirostat,
            mirostat_tau=req.MirostatTAU or 5.0,
            mirostat_eta=req.MirostatETA or 0.1,
            grammar=grammar,
        )
        parts: list[bytes] = []
        emit = job.out.put if stream else parts.append
        shaper = StreamShaper(prepared) if stream and prepared.mode else None
        top_n = req.TopLogprobs if req.Logprobs else -1  # -1: no logprobs asked for
        logprobs: list[dict[str, Any]] = []  # streamed: those of the tokens not sent yet
        if stream and (shaper is not None or top_n >= 0):
            def emit_shaped(data: bytes) -> None:
                lp = json.dumps({"content": logprobs}).encode() if top_n >= 0 else b""
                logprobs.clear()
                if shaper is None:
                    job.out.put(backend_pb2.Reply(message=data, logprobs=lp))
                for reply in shaper.feed(data.decode("utf-8"), lp) if shaper is not None else ():
                    job.out.put(reply)

            emit = emit_shaped
        decoder = codecs.getincrementaldecoder("utf-8")("replace")
        pieces, piece = self.pieces, self._piece
        stop_at_eog = not req.IgnoreEOS
        pending = ""  # text held back because it may start a stop word
        stopped = False
        n = 0
        t_first = 0.0
        try:
            for tok in gen:
                if not n:
                    t_first = time.perf_counter()
                if job.cancelled:
                    break
                info = pieces.get(tok) or piece(tok)
                if info[1] and stop_at_eog:
                    break
                n += 1
                if top_n >= 0:
                    logprobs.append(self._logprob(tok, info[0], top_n))
                text = decoder.decode(info[0])
                if text:
                    if not stops:
                        emit(text.encode())
                    else:
                        pending += text
                        cut = find_stop(pending, stops)
                        if cut != -1:
                            if cut:
                                emit(pending[:cut].encode())
                            pending, stopped = "", True
                            break
                        keep = partial_stop(pending, stops)
                        if keep < len(pending):
                            emit(pending[: len(pending) - keep].encode())
                            pending = pending[len(pending) - keep :]
                if n >= max_tokens:
                    break
        except Exception:
            llm.reset()
            raise
        finally:
            gen.close()
        if not stopped:
            pending += decoder.decode(b"", final=True)
            if pending:
                cut = find_stop(pending, stops) if stops else -1
                tail = pending if cut == -1 else pending[:cut]
                if tail:
                    emit(tail.encode())
        t_end = time.perf_counter()
        if not t_first:
            t_first = t_end
        for reply in shaper.finish() if shaper is not None else ():
            job.out.put(reply)
        text = b"".join(parts)
        reply = backend_pb2.Reply(
            message=text,
            tokens=n,
            prompt_tokens=n_prompt,
            timing_prompt_processing=(t_first - t0) * 1000.0,
            timing_token_generation=(t_end - t_first) * 1000.0,
        )
        if top_n >= 0 and not stream:
            reply.logprobs = json.dumps({"content": logprobs}).encode()
        return reply if stream else finish_reply(prepared, text.decode("utf-8", "replace"), reply)

    # -- embeddings and tokens ---------------------------------------------------------

    def embed(self, job: Job, req: Any) -> Any:
        """Embedding: one mean-pooled vector for Prompt (or EmbeddingTokens)."""
        emb = self._embedder()
        if req.EmbeddingTokens:
            tokens = list(req.EmbeddingTokens)
        else:
            tokens = emb.tokenize(req.Prompt.encode("utf-8"), add_bos=True, special=False)
        tokens = tokens[: emb.n_batch]
        if not tokens:
            raise BadRequest("nothing to embed: empty prompt")
        ctx, batch = emb._ctx, emb._batch
        ctx.kv_cache_clear()
        batch.reset()
        batch.add_sequence(tokens, 0, True)
        try:
            ctx.decode(batch)
            vec = llama_cpp.llama_get_embeddings_seq(ctx.ctx, 0)[: emb.n_embd()]
        finally:
            batch.reset()
            ctx.kv_cache_clear()
        if self.options.get("embd_normalize", "true").lower() != "false":
            norm = math.sqrt(sum(x * x for x in vec)) or 1.0
            vec = [x / norm for x in vec]
        return backend_pb2.EmbeddingResult(
            embeddings=vec,
            dim=len(vec),
            tokens=1,
            prompt_tokens=len(tokens),
            layout=backend_pb2.EMBEDDING_LAYOUT_FINAL,
        )

    def tokenize(self, job: Job, req: Any) -> Any:
        """TokenizeString: the prompt's tokens, special tokens parsed, no BOS added."""
        toks = self._require().tokenize(req.Prompt.encode("utf-8"), add_bos=False, special=True)
        return backend_pb2.TokenizationResponse(length=len(toks), tokens=toks)
