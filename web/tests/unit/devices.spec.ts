import { expect, test } from "@playwright/test";
import type { AccountDeviceView } from "../../src/contract";
import { ASK, isOwner, offered, pairedText } from "../../src/devices";

function row(extra: Partial<AccountDeviceView>): AccountDeviceView {
  return { fingerprint: "11".repeat(32), short: "1111-1111-1111-1111", you: false, owner: false, online: false, paired: [], ...extra };
}

test("an owner may revoke anyone and make owners; another device only revoke itself", () => {
  const me = row({ you: true, owner: true });
  const member = row({ fingerprint: "22".repeat(32) });
  const peer = row({ fingerprint: "33".repeat(32), owner: true });
  const asOwner = [me, member, peer];
  expect(isOwner(asOwner)).toBe(true);
  expect(offered(me, asOwner)).toEqual({ revoke: "self", grant: false });
  expect(offered(member, asOwner)).toEqual({ revoke: "other", grant: true });
  expect(offered(peer, asOwner)).toEqual({ revoke: "other", grant: false });
  const alone = [row({ you: true })];
  expect(isOwner(alone)).toBe(false);
  expect(offered(alone[0]!, alone)).toEqual({ revoke: "self", grant: false });
  // A list shown before this device lost its ownership offers nothing on others.
  expect(offered(member, [row({ you: true }), member])).toEqual({ revoke: null, grant: false });
});

test("the machines a device paired with, hidden characters shown", () => {
  expect(pairedText(row({}))).toBe("No machine");
  const paired = [
    { fingerprint: "aa".repeat(32), hostname: "alpha", online: true },
    { fingerprint: "bb".repeat(32), hostname: "be\u202eta", online: false },
  ];
  expect(pairedText(row({ paired }))).toBe("alpha (online), be⟪U+202E⟫ta");
});

test("the confirmations say what happens, for good", () => {
  expect(ASK.revokeSelf).toContain("loses access");
  expect(ASK.revokeSelf).toContain("pair again");
  expect(ASK.revokeOther("2222")).toContain("every machine forgets it, for good");
  expect(ASK.grant("2222")).toContain("including you");
});
