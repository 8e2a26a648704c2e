/**
 * Terminal styling: whether to use colors and a live view, and ANSI helpers.
 *
 * @since 0.1.0
 * @internal
 */

/**
 * How human output is drawn.
 *
 * @internal
 */
export interface Style {
  readonly color: boolean
  /** The terminal width, when writing to one. */
  readonly columns: number | undefined
}

const codes = { green: "32", yellow: "33", red: "31", dim: "2", bold: "1", cyan: "36" } as const

/** @internal */
export type StyleName = keyof typeof codes

/** @internal */
export const paint = (style: Style, name: StyleName, text: string): string =>
  style.color && text !== "" ? `\u001b[${codes[name]}m${text}\u001b[0m` : text

/**
 * Whether the process stream is a terminal that may be drawn on (a TTY, `NO_COLOR` unset, `TERM` not `dumb`).
 *
 * @internal
 */
export const isInteractive = (stream: NodeJS.WriteStream): boolean =>
  stream.isTTY === true && (process.env.NO_COLOR === undefined || process.env.NO_COLOR === "") &&
  process.env.TERM !== "dumb"

/** @internal */
export const forStream = (stream: NodeJS.WriteStream): Style => {
  const interactive = isInteractive(stream)
  return { color: interactive, columns: interactive ? stream.columns : undefined }
}

/** @internal */
export const plain: Style = { color: false, columns: undefined }

/**
 * Removes ANSI escape sequences (for width computations).
 *
 * @internal
 */
export const stripAnsi = (text: string): string => text.replace(/\u001b\[[0-9;?]*[A-Za-z]/g, "")
