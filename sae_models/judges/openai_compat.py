"""An OpenAI-compatible chat endpoint: OpenAI itself, vLLM, or ``transformers serve`` on loopback.

The official ``openai`` client does the HTTP: timeouts, and retries with exponential backoff on connection
errors, 429 and 5xx. What is left here is turning its final failure into one line that names the endpoint
(never the key, which is read from an environment variable at call time).
"""

import os

from sae_models.judges.protocol import Completion, JudgeError, JudgeRequest


class OpenAICompatibleBackend:
    name = "openai"

    def __init__(self, base_url: str, model: str, api_key_env: str = "OPENAI_API_KEY", max_concurrency: int = 8,
                 max_retries: int = 4, timeout_s: float = 60.0, temperature: float = 0.0):
        from openai import OpenAI

        self.base_url, self.model, self.api_key_env = base_url, model, api_key_env
        self.max_concurrency, self.max_retries, self.temperature = max_concurrency, max_retries, temperature
        # Local servers accept any key; a real endpoint answers 401 and the error names the variable.
        key = os.environ.get(api_key_env) or "unset"
        self._client = OpenAI(base_url=base_url, api_key=key, max_retries=max_retries, timeout=timeout_s)

    def complete(self, request: JudgeRequest) -> Completion:
        import openai

        try:
            response = self._client.chat.completions.create(
                model=self.model, messages=list(request.messages), max_tokens=request.max_tokens,
                temperature=self.temperature)
        except (openai.AuthenticationError, openai.PermissionDeniedError) as exc:
            raise JudgeError(f"judge endpoint {self.base_url}: authentication refused (HTTP {exc.status_code}); "
                             f"check ${self.api_key_env}") from None
        except openai.APIStatusError as exc:
            raise JudgeError(f"judge endpoint {self.base_url}: HTTP {exc.status_code} for model {self.model!r} "
                             f"after {self.max_retries} retries") from None
        except openai.APIConnectionError as exc:
            raise JudgeError(f"judge endpoint {self.base_url}: {type(exc).__name__.removeprefix('API')} after "
                             f"{self.max_retries} retries ({exc.__cause__ or exc})") from None
        usage = response.usage
        text = response.choices[0].message.content if response.choices else ""
        return Completion(text or "", getattr(usage, "prompt_tokens", 0) or 0,
                          getattr(usage, "completion_tokens", 0) or 0)
