import { expect, test } from "@playwright/test";
import { splitWords } from "../../src/words";

test("words, quotes and escapes as a shell splits them", () => {
  expect(splitWords("npx  -y @zed/agent --acp")).toEqual(["npx", "-y", "@zed/agent", "--acp"]);
  expect(splitWords(`run 'a b' "c \\"d\\"" e\\ f ''`)).toEqual(["run", "a b", 'c "d"', "e f", ""]);
  expect(splitWords("  ")).toEqual([]);
  expect(splitWords("'open")).toEqual({ error: "a single quote is not closed" });
  expect(splitWords('"open')).toEqual({ error: "a double quote is not closed" });
});
