"""httpx and aiohttp calls made the way an addon would; line numbers are asserted by the tests."""


def with_httpx(url, **kwargs):
    import httpx
    return httpx.get(url, **kwargs)  # LINE_HTTPX


async def with_httpx_async(url, client):
    return await client.get(url)  # LINE_HTTPX_ASYNC


async def with_aiohttp(url, session):
    async with session.get(url) as response:  # LINE_AIOHTTP
        return await response.read()
