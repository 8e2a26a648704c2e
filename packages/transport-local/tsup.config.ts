import { defineConfig } from "tsup"
import { library } from "../../scripts/tsup-library.js"

export default defineConfig(library)
