import { expect, test } from "@playwright/test";
import { isHidden, reveal, revealPlain } from "../../src/text";

test("plain text, newlines and tabs pass through", () => {
  expect(reveal("hello\n\tworld")).toEqual(["hello\n\tworld"]);
  expect(reveal("")).toEqual([]);
  expect(reveal("naïve — 日本語 🙂")).toEqual(["naïve — 日本語 🙂"]);
});

test("bidi overrides, isolates and marks become visible", () => {
  // The classic trojan-source trick: an override that makes "rm -rf" read backwards.
  expect(reveal("ls \u202Efr- mr\u202C")).toEqual(["ls ", { mark: "U+202E" }, "fr- mr", { mark: "U+202C" }]);
  for (const code of [0x202a, 0x202b, 0x202c, 0x202d, 0x202e, 0x2066, 0x2067, 0x2068, 0x2069, 0x200e, 0x200f, 0x061c]) {
    expect(isHidden(code), code.toString(16)).toBe(true);
  }
  expect(revealPlain("a\u2066b")).toBe("a⟪U+2066⟫b");
});

test("C0 and C1 controls except newline and tab become visible", () => {
  for (let code = 0; code < 0x20; code++) expect(isHidden(code)).toBe(code !== 0x0a && code !== 0x09);
  for (let code = 0x7f; code <= 0x9f; code++) expect(isHidden(code)).toBe(true);
  expect(isHidden(0xa0)).toBe(false);
  expect(reveal("\u001b[31mred\u0000")).toEqual([{ mark: "U+001B" }, "[31mred", { mark: "U+0000" }]);
  expect(revealPlain("a\r\nb\u0085")).toBe("a⟪U+000D⟫\nb⟪U+0085⟫");
});

test("characters that take no room, tags and the mark's own bracket become visible", () => {
  for (const code of [0x200b, 0x200c, 0x200d, 0x2060, 0xfeff, 0x00ad, 0x2028, 0x27ea, 0xe0041]) {
    expect(isHidden(code), code.toString(16)).toBe(true);
  }
  expect(revealPlain("ok\u{E0072}m")).toBe("ok⟪U+E0072⟫m");
  expect(revealPlain("a\u200Bb")).toBe("a⟪U+200B⟫b");
  // A literal mark cannot pass for one.
  expect(revealPlain("⟪U+202E⟫")).toBe("⟪U+27EA⟫U+202E⟫");
  expect(reveal("🙂")).toEqual(["🙂"]);
});

test("nothing is lost: runs and marks give back the text", () => {
  const text = "x\u202Ey\u0007\u200Fz\n\u2069\u{E0041}🙂⟪";
  const back = reveal(text)
    .map((piece) => (typeof piece === "string" ? piece : String.fromCodePoint(parseInt(piece.mark.slice(2), 16))))
    .join("");
  expect(back).toBe(text);
});
