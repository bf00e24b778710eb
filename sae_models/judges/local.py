"""A local chat model run with transformers (greedy decoding, one request at a time)."""

import threading

import torch

from sae_models.judges.protocol import Completion, JudgeError, JudgeRequest


class TransformersChatBackend:
    name = "transformers"
    max_concurrency = 1

    def __init__(self, source: str, device: str = "cpu", dtype: str = "float32"):
        from sae_models.lm import ModelLoadError, load_lm

        self.model = source
        try:
            self._lm = load_lm(source, dtype=dtype, device=device)
        except ModelLoadError as exc:
            raise JudgeError(f"local judge model: {exc}") from None
        if getattr(self._lm.tokenizer, "chat_template", None) is None:
            raise JudgeError(f"local judge model {source}: its tokenizer has no chat template")
        self._lock = threading.Lock()

    @torch.no_grad()
    def complete(self, request: JudgeRequest) -> Completion:
        tok, model = self._lm.tokenizer, self._lm.model
        ids = tok.apply_chat_template(list(request.messages), add_generation_prompt=True, return_tensors="pt",
                                      return_dict=True)["input_ids"].to(self._lm.device)
        with self._lock:
            out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=request.max_tokens,
                                 do_sample=False, pad_token_id=tok.pad_token_id or tok.eos_token_id)
        new = out[0, ids.shape[1]:]
        return Completion(tok.decode(new, skip_special_tokens=True), ids.shape[1], len(new))
