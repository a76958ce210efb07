"""Whether a machine's guest agent answers, and what it says, kept fresh for ``observe``.

One ``AgentWatch`` per machine holds the guest agent channel (its socket serves one client) and pings
the agent every ``interval`` seconds: ``connected`` and the guest's ``interfaces`` change only from
what the agent answered, and every change calls ``on_change`` so the node agent re-reads the status
(``AgentConnected``, ``status.interfaces``). The ping alone decides ``connected``: a busy guest may
take longer to list its interfaces (the queries have ``query_timeout``) than to answer a ping, and an
agent that answers is connected (the ping's ``timeout`` allows for a guest under TCG on a busy host
resynchronising first); an interface list that does not come in time keeps the last one.
``observe`` reads the last values and never waits on the guest. Queries for the API (``guestosinfo``,
``userlist``, ``filesystemlist``) and the agent's reboot share the same connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path
from typing import Any

from qemu.qmp import ExecuteError

from vmplane.hypervisor import guest_info
from vmplane.hypervisor.base import OnChange
from vmplane.hypervisor.guest_info import GuestInterface
from vmplane.hypervisor.qemu.guest_agent import GuestAgent, GuestAgentError

__all__ = ["AGENT_QUERY_NAMES", "AgentWatch"]

log = logging.getLogger(__name__)

#: The API's guest-agent subresources.
AGENT_QUERY_NAMES = frozenset({"guestosinfo", "userlist", "filesystemlist"})
_INFO_COMMANDS = (
    "guest-info",
    "guest-get-osinfo",
    "guest-get-host-name",
    "guest-get-timezone",
    "guest-get-users",
    "guest-get-fsinfo",
)


class AgentWatch:
    """Polls the guest agent of machine ``name`` on socket ``path``."""

    def __init__(
        self,
        name: str,
        path: Path,
        *,
        on_change: OnChange,
        interval: float = 3.0,
        timeout: float = 5.0,
        query_timeout: float = 10.0,
    ) -> None:
        self._name = name
        self._agent = GuestAgent(name, path, timeout=timeout)
        self._on_change = on_change
        self._interval = interval
        self._query_timeout = query_timeout
        self._task: asyncio.Task[None] | None = None
        self.connected = False
        self.interfaces: tuple[GuestInterface, ...] = ()

    def start(self) -> AgentWatch:
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"agent-watch-{self._name}")
        return self

    async def _run(self) -> None:
        while True:
            await self._poll()
            await asyncio.sleep(self._interval)

    async def _poll(self) -> None:
        found: tuple[GuestInterface, ...]
        try:
            await self._agent.execute("guest-ping")
        except GuestAgentError as err:
            log.debug("%s", err)
            connected, found = False, ()
        else:
            connected, found = True, self.interfaces
            try:
                listed = await self._agent.execute(
                    "guest-network-get-interfaces", timeout=self._query_timeout
                )
                found = guest_info.interfaces(listed)
            except GuestAgentError as err:
                log.debug("%s", err)
        if (connected, found) != (self.connected, self.interfaces):
            self.connected, self.interfaces = connected, found
            try:
                self._on_change(self._name)
            except Exception:
                log.exception("%s: on_change callback failed", self._name)

    async def _answer(self, command: str) -> Any:
        try:
            return await self._agent.execute(command, timeout=self._query_timeout)
        except GuestAgentError as err:
            if isinstance(err.__cause__, ExecuteError):
                return None  # the agent lacks this command: upstream leaves the part out
            raise

    async def query(self, what: str) -> dict[str, Any]:
        """The subresource ``what``'s answer; GuestAgentError when the agent does not answer."""
        if what == "userlist":
            return guest_info.user_list(await self._answer("guest-get-users"))
        if what == "filesystemlist":
            return guest_info.filesystem_list(await self._answer("guest-get-fsinfo"))
        if what != "guestosinfo":
            raise ValueError(f"unknown guest agent query {what!r}")
        answers = [await self._answer(command) for command in _INFO_COMMANDS]
        info, osinfo, hostname, timezone, users, fsinfo = answers
        return guest_info.guest_os_info(
            info=info, osinfo=osinfo, hostname=hostname, timezone=timezone, users=users, fsinfo=fsinfo
        )

    async def reboot(self) -> None:
        """``guest-shutdown`` with ``mode: reboot``. qemu-ga sends no answer when it complies, so only
        an error answer is a refusal (GuestAgentError); silence is success."""
        try:
            await self._agent.execute("guest-shutdown", {"mode": "reboot"})
        except GuestAgentError as err:
            if isinstance(err.__cause__, ExecuteError):
                raise

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._agent.close()
