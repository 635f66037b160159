/** Short story openings the local benches prompt with (the fixtures are TinyStories models). */
export const prompts: ReadonlyArray<string> = [
  "Once upon a time",
  "The little dog",
  "Lily and Ben went to the park",
  "One day, a big bird",
  "Tom had a red ball",
  "The sun was shining",
  "There was a small cat",
  "Mom said",
  "The boy wanted to play",
  "In the forest",
  "A girl named Sue",
  "The old tree",
  "Sam found a box",
  "The happy frog",
  "It was a rainy day",
  "The car was fast",
  "Anna liked flowers",
  "The fish swam",
  "Max saw a bug",
  "The princess smiled"
]
