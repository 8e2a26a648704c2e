/**
 * A small XML reader and writer for WS-Management envelopes: elements, attributes, text and the five predefined
 * entities plus character references. Names are compared by local name (namespace prefixes vary by peer).
 *
 * @internal
 */

/** @internal */
export interface Element {
  /** The local name (prefix removed). */
  readonly name: string
  /** Attributes by local name. */
  readonly attributes: Readonly<Record<string, string>>
  readonly children: ReadonlyArray<Element>
  /** The element's own text (concatenated, entities decoded). */
  readonly text: string
}

const ENTITIES: Record<string, string> = { amp: "&", lt: "<", gt: ">", quot: "\"", apos: "'" }

/** @internal */
export const decodeEntities = (s: string): string =>
  s.indexOf("&") < 0 ? s : s.replace(/&(#x[0-9a-fA-F]+|#[0-9]+|[a-z]+);/g, (whole, ref: string) => {
    if (ref.startsWith("#x")) return String.fromCodePoint(parseInt(ref.slice(2), 16))
    if (ref.startsWith("#")) return String.fromCodePoint(parseInt(ref.slice(1), 10))
    return ENTITIES[ref] ?? whole
  })

/** @internal */
export const escape = (s: string): string =>
  s.replace(/[&<>"]/g, (c) => (c === "&" ? "&amp;" : c === "<" ? "&lt;" : c === ">" ? "&gt;" : "&quot;"))

const localName = (qname: string): string => {
  const colon = qname.indexOf(":")
  return colon < 0 ? qname : qname.slice(colon + 1)
}

interface Building {
  readonly name: string
  readonly attributes: Record<string, string>
  readonly children: Array<Element>
  text: string
}

const ATTRIBUTE = /([^\s=/>]+)\s*=\s*(?:"([^"]*)"|'([^']*)')/g

/**
 * Parses a document; throws `Error("malformed XML: ...")` on a structure it cannot read.
 *
 * @internal
 */
export const parse = (xml: string): Element => {
  const stack: Array<Building> = [{ name: "#document", attributes: {}, children: [], text: "" }]
  let i = 0
  while (i < xml.length) {
    const lt = xml.indexOf("<", i)
    if (lt < 0) break
    if (lt > i) stack[stack.length - 1]!.text += decodeEntities(xml.slice(i, lt))
    if (xml.startsWith("<?", lt)) {
      i = xml.indexOf("?>", lt) + 2
    } else if (xml.startsWith("<!--", lt)) {
      i = xml.indexOf("-->", lt) + 3
    } else if (xml.startsWith("<![CDATA[", lt)) {
      const end = xml.indexOf("]]>", lt)
      stack[stack.length - 1]!.text += xml.slice(lt + 9, end)
      i = end + 3
    } else if (xml.startsWith("</", lt)) {
      const gt = xml.indexOf(">", lt)
      const name = localName(xml.slice(lt + 2, gt).trim())
      const done = stack.pop()
      if (done === undefined || stack.length === 0 || done.name !== name) {
        throw new Error(`malformed XML: unexpected closing tag ${name}`)
      }
      stack[stack.length - 1]!.children.push(done)
      i = gt + 1
    } else {
      const gt = xml.indexOf(">", lt)
      if (gt < 0) throw new Error("malformed XML: unterminated tag")
      const selfClosing = xml[gt - 1] === "/"
      const inner = xml.slice(lt + 1, selfClosing ? gt - 1 : gt)
      const nameEnd = inner.search(/[\s/]|$/)
      const attributes: Record<string, string> = {}
      for (const m of inner.slice(nameEnd).matchAll(ATTRIBUTE)) {
        attributes[localName(m[1]!)] = decodeEntities(m[2] ?? m[3] ?? "")
      }
      const element: Building = { name: localName(inner.slice(0, nameEnd)), attributes, children: [], text: "" }
      if (selfClosing) stack[stack.length - 1]!.children.push(element)
      else stack.push(element)
      i = gt + 1
    }
    if (i <= 0) throw new Error("malformed XML: unterminated markup")
  }
  if (stack.length !== 1) throw new Error("malformed XML: unclosed elements")
  const root = stack[0]!.children[0]
  if (root === undefined) throw new Error("malformed XML: no root element")
  return root
}

/** The first descendant (depth first, the element itself included) with this local name. @internal */
export const find = (element: Element, name: string): Element | undefined => {
  if (element.name === name) return element
  for (const child of element.children) {
    const found = find(child, name)
    if (found !== undefined) return found
  }
  return undefined
}

/** Every descendant with this local name, in document order. @internal */
export const findAll = (element: Element, name: string, into: Array<Element> = []): Array<Element> => {
  if (element.name === name) into.push(element)
  for (const child of element.children) findAll(child, name, into)
  return into
}

/** The text of the first descendant with this local name. @internal */
export const textOf = (element: Element, name: string): string | undefined => find(element, name)?.text.trim()
