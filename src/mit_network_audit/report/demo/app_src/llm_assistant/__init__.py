"""An assistant add-on: sends the user's question to the LLM provider the operator chose."""

import requests


def ask(provider_url: str, api_key: str, question: str) -> str:
    response = requests.post(f"{provider_url}/v1/chat/completions",
                             json={"model": "demo-model", "messages": [{"role": "user", "content": question}]},
                             headers={"Authorization": f"Bearer {api_key}"}, timeout=5)
    return response.json()["choices"][0]["message"]["content"]
