import { readFileSync } from "node:fs";

/** The password placeholder of the README's rule. */
const PLACEHOLDER = ">CHANGE-ME";

/**
 * The README's least-privilege ACL rule, read from its "Redis connection
 * security" section. The README is what operators copy, so it is what the
 * tests run; a constant in src/ would be code that only tests import, and
 * could drift from the README unseen. Returns the user name and the rules
 * without the password placeholder (a test's user gets its own password).
 *
 * @throws Error when the section or its one ACL SETUSER line is missing.
 */
export function readmeAclRule(): { user: string; rules: string } {
  const readme = readFileSync("README.md", "utf8");
  const start = readme.indexOf("### Redis connection security");
  if (start < 0) throw new Error("README.md has no Redis connection security section");
  const section = readme.slice(start, readme.indexOf("\n#", start + 1));
  const commands = [...section.matchAll(/^ACL SETUSER (\S+) (.+)$/gm)];
  const [, user, rules] = commands[0] ?? [];
  if (commands.length !== 1 || !user || !rules?.split(" ").includes(PLACEHOLDER)) {
    throw new Error(
      `README.md's Redis connection security section needs one ACL SETUSER line with ${PLACEHOLDER}`,
    );
  }
  return {
    user,
    rules: rules
      .split(" ")
      .filter((rule) => rule !== PLACEHOLDER)
      .join(" "),
  };
}
