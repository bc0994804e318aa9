"""Document text and pasted material never reach the cloud.

A document carrying a unique sentinel in its text, its file name and its metadata is
summarised and asked about on a real llama.cpp node; then a task in the same chat is
planned in the (stand-in) cloud. Nothing the stand-in received carries the sentinel, in
plain, base64 or URL-encoded form. Whatever bug might put local-only text into a cloud
request, the client refuses it and sends nothing. Pasted material reaches the planner
only as a placeholder, and a request that is mostly pasted is not planned there at all.
"""

from __future__ import annotations

import asyncio
import pathlib
import warnings

import pytest

from app.core import secrets
from app.core.cloud import CloudPlanner
from app.core.errors import LocalOnlyRefused
from app.core.privacy import LOCAL_ONLY
from app.core.routing.router import Override
from app.core.settings import Settings
from app.core.workspace import Workspace
from tests.fixtures import leaks
from tests.fixtures.llama_cpp_server import LlamaCppServer
from tests.fixtures.openrouter_server import OpenRouterServer

SENTINEL = "Zebraquartz7731"


def workspace_for(node: LlamaCppServer, **settings: object) -> Workspace:
    secrets.set_secret(secrets.NODE_TOKEN, node.api_key)
    values: dict[str, object] = {"node_urls": [node.base_url], "max_tokens": 24,
                                 "planner_model": "stand-in/planner",
                                 "planner_max_tokens": 400, "monthly_budget_usd": 20,
                                 "mode": "plan with cloud"}
    Settings().changed(**{**values, **settings}).save()
    return Workspace.open()


def sentinel_pdf(folder: pathlib.Path) -> pathlib.Path:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "defusedxml", UserWarning)
        from fpdf import FPDF

    pdf = FPDF()
    pdf.set_title(f"Board report {SENTINEL}")
    pdf.set_author(f"{SENTINEL} Finance")
    pdf.set_font("Helvetica", size=11)
    for page in range(1, 4):
        pdf.add_page()
        pdf.multi_cell(0, 6, text=(
            f"Page {page}. The budget code for the regional programme is {SENTINEL}, and it "
            "must be quoted on every purchase order raised this quarter by the finance team. "
            "The programme covers the new warehouse, two delivery vans and staff training."))
    path = folder / f"report-{SENTINEL}.pdf"
    pdf.output(str(path))
    return path


def leaked(cloud: OpenRouterServer) -> list[str]:
    """The requests to the cloud that carried the sentinel in any form."""
    return leaks.leaked(cloud, SENTINEL)


def test_a_documents_text_name_and_metadata_never_reach_the_cloud(
        llama_cpp_node: LlamaCppServer, cloud: OpenRouterServer, tmp_path: pathlib.Path) -> None:
    workspace = workspace_for(llama_cpp_node)
    pdf = sentinel_pdf(tmp_path)

    async def main() -> list[str]:
        chat = workspace.history.create_chat()
        try:
            summary = await workspace.summarize_document(chat.id, pdf, lambda e: None)
            assert summary.status == "complete", summary.error
            (document,) = workspace.history.documents(chat.id)
            await workspace.ask_about_document(chat.id, document.id,
                                               "What budget code must be quoted?",
                                               lambda e: None)
            planned = await workspace.send(
                chat.id, "Plan the follow-up on the report: tasks for finance and a note to "
                         "the board.", lambda e: None)
            assert planned.status == "complete", planned.error
            return [m.kind for m in workspace.history.messages(chat.id)]
        finally:
            await workspace.close()

    kinds = asyncio.run(main())
    assert "plan" in kinds and "step" in kinds  # the task was planned and carried out
    (planning,) = cloud.chat_requests()
    brief = planning.json()["messages"][-1]["content"]
    assert "doc:1: a PDF of 3 pages" in brief  # the document, as an id with its shape
    assert leaked(cloud) == []


def test_the_cloud_client_refuses_local_only_text_whatever_put_it_there(
        llama_cpp_node: LlamaCppServer, cloud: OpenRouterServer, tmp_path: pathlib.Path) -> None:
    workspace = workspace_for(llama_cpp_node)
    pdf = sentinel_pdf(tmp_path)

    async def main() -> None:
        chat = workspace.history.create_chat()
        try:
            await workspace.summarize_document(chat.id, pdf, lambda e: None)
            pages = workspace.history.document_pages(workspace.history.documents(chat.id)[0].id)
            planner = CloudPlanner(workspace.settings, workspace.policy, workspace.ledger())
            # As a bug upstream might: a page's text (a sentence of it) in a cloud request.
            quoted = pages[1][1].split(". ")[1]
            with pytest.raises(LocalOnlyRefused):
                async for _ in planner.plan([{"role": "user", "content": f"Plan: {quoted}"}]):
                    pass
            # The file name alone is refused too.
            with pytest.raises(LocalOnlyRefused):
                async for _ in planner.plan([{"role": "user", "content": pdf.name}]):
                    pass
            assert workspace.ledger().month_summary().calls == 0  # nothing reserved
        finally:
            await workspace.close()

    asyncio.run(main())
    assert cloud.requests == []  # nothing was sent, not even a price list request


def test_what_an_earlier_session_read_is_kept_from_the_cloud_too(
        llama_cpp_node: LlamaCppServer, cloud: OpenRouterServer, tmp_path: pathlib.Path) -> None:
    workspace = workspace_for(llama_cpp_node)
    pdf = sentinel_pdf(tmp_path)

    async def read_it() -> None:
        chat = workspace.history.create_chat()
        try:
            await workspace.summarize_document(chat.id, pdf, lambda e: None)
        finally:
            await workspace.close()

    asyncio.run(read_it())
    LOCAL_ONLY.clear()  # a new session: nothing marked yet
    again = Workspace.open()

    async def plan_with_it() -> str:
        chat = again.history.create_chat()
        try:
            await again.send(
                chat.id, "Plan a reminder campaign: the purchase orders must quote the budget "
                         f"code, which is {SENTINEL}, and it must be quoted on every purchase "
                         "order raised this quarter by the finance team.", lambda e: None)
            return again.history.messages(chat.id)[1].content
        finally:
            await again.close()

    note = asyncio.run(plan_with_it())
    assert "kept document or pasted text from going to the cloud" in note
    assert leaked(cloud) == [] and cloud.chat_requests() == []


HR_EMAIL = (
    "Hi Sam, I need to raise something in confidence. Since March my team lead has "
    "repeatedly made comments about my sick leave in front of colleagues, and last week "
    "said in a one-to-one that people with my health condition are not promoted. I have "
    "notes with dates for each occasion. I don't want this to become a formal grievance "
    "yet, but I would like advice on what my options are and whether occupational health "
    "should be involved. Please keep this between us for now; I am worried about how my "
    "team lead would react if they found out I had spoken to HR. I am available to talk "
    "on Tuesday or Thursday afternoon. Thanks, Priya (payroll team, ext 4417)")


@pytest.mark.parametrize("override", [None, Override.PLAN])
def test_a_request_that_is_mostly_pasted_is_never_planned_in_the_cloud(
        llama_cpp_node: LlamaCppServer, cloud: OpenRouterServer, override: Override | None) -> None:
    assert 600 < len(HR_EMAIL) < 650
    workspace = workspace_for(llama_cpp_node, mode="auto")

    async def main() -> str:
        chat = workspace.history.create_chat()
        try:
            answer = await workspace.send(chat.id, f"{HR_EMAIL}\n\nplease summarise",
                                          lambda e: None, pasted=(HR_EMAIL,),
                                          override=override)
            assert answer.status == "complete"
            return answer.route
        finally:
            await workspace.close()

    route = asyncio.run(main())
    assert cloud.requests == []
    assert route in ("local", "local plan")
