/** Placeholder until this module lands. @since 0.1.0 */
export {}
