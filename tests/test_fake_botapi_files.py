"""The fake Bot API's file uploads, chat members and button presses, seen by a real `Bot`."""

from __future__ import annotations

import aiohttp
import pytest
from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup
from telegram.constants import ChatMemberStatus
from telegram.error import BadRequest

from tests.fake_botapi import FakeBotApi
from tests.pictures import picture
from tests.test_fake_botapi import raw_call


@pytest.fixture
async def bot(api: FakeBotApi):
    async with Bot(api.token, base_url=api.base_url, base_file_url=api.base_file_url) as bot:
        yield bot


async def test_a_photo_upload_is_kept_as_sent_and_served_in_sizes(api, bot, ann) -> None:
    chat = api.private_chat(ann)
    png = picture((900, 450), (10, 200, 30))
    message = await bot.send_photo(chat["id"], png, caption="<b>9</b> results", parse_mode="HTML")

    (sent,) = await api.wait_for_sent(chat["id"])
    assert (sent["kind"], sent["caption"], bytes(sent["file"])) == (
        "photo",
        "<b>9</b> results",
        png,
    )
    assert [(size.width, size.height) for size in message.photo][-1] == (900, 450)
    assert message.caption == "<b>9</b> results"


async def test_a_photo_that_is_not_an_image_or_a_caption_too_long_is_refused(api, bot, ann):
    chat = api.private_chat(ann)
    with pytest.raises(BadRequest, match="Image_process_failed"):
        await bot.send_photo(chat["id"], b"not an image at all")
    with pytest.raises(BadRequest, match="Message caption is too long"):
        await bot.send_photo(chat["id"], picture((10, 10), (0, 0, 0)), caption="x" * 1025)
    assert api.sent == []


async def test_a_document_upload_keeps_its_name_and_bytes(api, bot, ann) -> None:
    chat = api.private_chat(ann)
    message = await bot.send_document(chat["id"], b"a,b\r\n1,2\r\n", filename="rows.csv")
    (sent,) = await api.wait_for_sent(chat["id"])
    assert (sent["kind"], sent["file_name"], bytes(sent["file"])) == (
        "document", "rows.csv", b"a,b\r\n1,2\r\n",
    )  # fmt: skip
    assert message.document.file_name == "rows.csv"
    assert api.file_bytes(message.document.file_id) == b"a,b\r\n1,2\r\n"


async def test_a_document_without_an_upload_is_refused(api, ann) -> None:
    api.private_chat(ann)
    status, body = await raw_call(api, "sendDocument", json={"chat_id": ann["id"]})
    assert (
        status == 400 and body["description"] == "Bad Request: there is no document in the request"
    )
    form = aiohttp.FormData()
    form.add_field("chat_id", str(ann["id"]))
    form.add_field("document", b"", filename="empty.csv")
    status, body = await raw_call(api, "sendDocument", data=form)
    assert status == 400 and body["description"] == "Bad Request: file must be non-empty"


async def test_chat_members_have_the_status_a_test_gives_them(api, bot, ann, bob) -> None:
    group = api.group_chat(500)
    api.send_text(group, ann, "hi")  # anyone who wrote is a member
    api.set_member_status(group, bob, "administrator")
    member = await bot.get_chat_member(group["id"], ann["id"])
    admin = await bot.get_chat_member(group["id"], bob["id"])
    assert (member.status, member.user.first_name) == (ChatMemberStatus.MEMBER, "Ann")
    assert (admin.status, admin.user.first_name) == (ChatMemberStatus.ADMINISTRATOR, "Bob")
    with pytest.raises(BadRequest, match="Participant_id_invalid"):
        await bot.get_chat_member(group["id"], 12345)


async def test_a_button_press_arrives_as_a_callback_query(api, bot, ann) -> None:
    chat = api.private_chat(ann)
    keyboard = InlineKeyboardMarkup([[InlineKeyboardButton("Yes", callback_data="yes")]])
    await bot.send_message(chat["id"], "Sure?", reply_markup=keyboard)
    (sent,) = await api.wait_for_sent(chat["id"])

    query_id = api.press_button(ann, sent["message"], "yes")

    (update,) = await bot.get_updates(timeout=0)
    query = update.callback_query
    assert (query.id, query.data, query.from_user.id) == (query_id, "yes", ann["id"])
    assert query.message.text == "Sure?" and query.message.chat.id == chat["id"]
    assert await query.answer("noted") is True
    assert api.answered_callbacks[-1]["text"] == "noted"
