"""httpx and aiohttp calls made the way an addon would; line numbers are asserted by the tests."""


def with_httpx(url, **kwargs):
    import httpx
    return httpx.get(url, **kwargs)  # LINE_HTTPX


async def with_httpx_async(url, client):
    return await client.get(url)  # LINE_HTTPX_ASYNC


async def with_aiohttp(url, session):
    async with session.get(url) as response:  # LINE_AIOHTTP
        return await response.read()


async def with_aiohttp_gather(urls, session):
    import asyncio
    responses = await asyncio.gather(*(session.get(u) for u in urls))  # LINE_AIOHTTP_GATHER
    return [await r.read() for r in responses]


async def with_httpx_taskgroup(urls, client):
    import asyncio
    async with asyncio.TaskGroup() as group:  # LINE_HTTPX_TASKGROUP
        tasks = [group.create_task(client.get(u)) for u in urls]
    return [t.result().content for t in tasks]
