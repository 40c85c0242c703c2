from litestar import Litestar
from litestar.testing import AsyncTestClient


async def test_page(admin_client: AsyncTestClient[Litestar]) -> None:
    r = await admin_client.get("/settings/api-keys")
    print(r.text)
    assert r.status_code == 200
