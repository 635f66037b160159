/** Short story openings for the local batching tests: 16, each a different length. */
export const storyOpenings: ReadonlyArray<string> = [
  "Once upon a time",
  "The little dog",
  "Lily and Tom went to the park",
  "One day, a big bird",
  "Tim had a red ball",
  "The sun was hot",
  "Sara liked to sing",
  "There was a tree",
  "Mom said",
  "The cat was sad because",
  "Ben saw a fish",
  "In the garden",
  "A boy named Sam",
  "The girl smiled",
  "It was a rainy day",
  "They played all day"
]
